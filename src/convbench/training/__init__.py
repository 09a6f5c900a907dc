"""Training building blocks: input pipelines, augmentation, optimisers, callbacks, checkpoints."""
