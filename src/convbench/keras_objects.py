"""The Keras classes convbench registers (layers, losses, optimizers), importable in one call."""


def import_custom_objects() -> None:
    """Imports every module that registers a Keras class, so a saved convbench model loads in any
    process (a served model, a resumed checkpoint), whatever that process imported before."""
    import convbench.models.registry
    import convbench.training.augmentation
    import convbench.training.losses
    import convbench.training.optimizers  # noqa: F401
