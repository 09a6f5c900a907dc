"""The recipe schema: every key a recipe may hold, what it takes, its default and what it does.

A recipe (`training.<architecture>` in conf/base/parameters_training.yml, merged with the dataset's
overrides, conf/<env> and --params by `resolve_recipe`) is checked once against `Recipe` before
anything is built or trained (`check_recipe`). Every problem is reported at once, each naming its
key path and what the key takes::

    training.resnet.optimizer.name must be sgd, adam or adamw; received 'sgdd'
    training.resnet.schedule.peak_rate is unknown (did you mean peak_lr?): a cosine schedule takes ...

The check validates and leaves the recipe alone: the training code, recipe.json, MLflow and the
search keep reading the plain dict, so a valid recipe is saved and hashed as it always was (the
checkpoint and claim fingerprints do not move). The blocks' checks (`check_block`) are also what the
training code calls on the block it is given (`make_optimizer`, `learning_rate_schedule`,
`check_budget`, `check_distribute`, `lookahead`, `augmentation_layers`, `tta_views`,
`early_stopping`), so a recipe that reaches `fit` another way (a search trial, a benchmark, a test)
meets the same rules, and the defaults a consumer falls back on are the ones declared here. The
`model` block's keys are checked against the builder's signature (`convbench.models.registry`).

docs/recipe.md is written from this module (`python -m convbench.training.recipe > docs/recipe.md`);
tests/training/test_recipe.py fails when the two differ.

Pydantic models rather than dataclasses: the nesting, the blocks chosen by `name` (discriminated
unions), unknown and missing keys, error locations through nested blocks and lists, every problem
collected in one pass, and field descriptions and defaults to write the docs from all come with
it; with dataclasses each would be hand-written again, which is what this module replaces.
Pydantic is already installed (kedro-mlflow and mlflow need it) and is pinned in pyproject. The
leaf values use small validators of our own (`Kind`), not pydantic's coercion, so that a value is
never changed (`true` is not a number, `2.5` is not a whole number) and every message reads alike.
"""

import difflib
import inspect
import math
import numbers
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self, Union, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError, PydanticUndefined

from convbench.data.ferplus_labels import LABEL_MODES
from convbench.merging import deep_merge
from convbench.models.precision import MIXED_PRECISION
from convbench.models.registry import get_builder, hyperparameters

DOCS = "docs/recipe.md"
"""Where the reference written from this module lives (`markdown`)."""


class RecipeError(ValueError):
    """A recipe (or one of its blocks) that breaks the schema; `problems` holds one line per key, each naming its path."""

    def __init__(self, problems: list[str], where: str = "") -> None:
        self.problems, self.where = list(problems), where
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = f"{len(self.problems)} problems in {where or 'the recipe'}:\n" + "\n".join(
                f"  - {problem}" for problem in self.problems
            )
        super().__init__(f"{text}\n({DOCS} lists every recipe key)")

    def __reduce__(self) -> tuple[type, tuple[list[str], str]]:  # pickled by parallel runners as it was made
        return type(self), (self.problems, self.where)


# ---- values ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """What a value must be, in words: the error messages say it and docs/recipe.md lists it."""

    words: str


def _kind_of(annotation: Any) -> str:
    """What a field takes, in words (its `Kind`)."""
    for item in getattr(annotation, "__metadata__", ()):
        if isinstance(item, Kind):
            return item.words
    raise TypeError(f"No Kind in {annotation!r}")


def _problem(message: str, key: str | None = None) -> PydanticCustomError:
    """A schema error: `message` follows the key path (`key` added to it when the problem is one key of a block)."""
    return PydanticCustomError("recipe", "{message}", {"message": message, "key": key})


def _conjunction(values: Iterable[Any], word: str = "or") -> str:
    """`a, b or c` (`word`: or, and)."""
    texts = [yaml_text(value) for value in values]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} {word} {texts[-1]}"


def _value(words: str, accepts: Callable[[Any], bool]) -> Any:
    """A value type that is checked, never converted: `accepts(value)` or an error saying `words`."""

    def check(value: Any) -> Any:
        if not accepts(value):
            raise _problem(f" must be {words}; received {value!r}")
        return value

    return Annotated[Any, BeforeValidator(check), Kind(words)]


def optional(value_type: Any, say_null: bool = True) -> Any:
    """`value_type` or null (`None`); `say_null=False` leaves null out of the words (a key that may be left out,
    as a budget's `minutes` when it has `epochs`)."""
    words = _kind_of(value_type)
    if say_null:
        words = f"null or {words}"
    check = next(item for item in value_type.__metadata__ if isinstance(item, BeforeValidator)).func

    def check_unless_null(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except PydanticCustomError:
            raise _problem(f" must be {words}; received {value!r}") from None

    return Annotated[Any, BeforeValidator(check_unless_null), Kind(words)]


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


def yaml_text(value: Any) -> str:
    """`value` as it is written in YAML: null, true, 0.1, [1, 2], {a: 1}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {yaml_text(item)}" for key, item in value.items()) + "}"
    return str(value)


def alternatives(values: Iterable[Any]) -> str:
    """`a, b or c`."""
    return _conjunction(values, "or")


def one_of(*values: Any) -> Any:
    """One of `values` (compared with their type: `true` is not `1`)."""
    return _value(alternatives(values), lambda value: any(type(value) is type(v) and value == v for v in values))


NUMBER = _value("a number", _is_number)
POSITIVE = _value("a positive number", lambda v: _is_number(v) and v > 0)
NON_NEGATIVE = _value("a number >= 0", lambda v: _is_number(v) and v >= 0)
FRACTION = _value("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1)
BELOW_ONE = _value("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1)
OPEN_FRACTION = _value("a number in (0, 1)", lambda v: _is_number(v) and 0 < v < 1)
WHOLE_POSITIVE = _value("a whole number >= 1", lambda v: _is_whole(v) and v >= 1)
WHOLE_NON_NEGATIVE = _value("a whole number >= 0", lambda v: _is_whole(v) and v >= 0)
BOOLEAN = _value("true or false", lambda v: isinstance(v, bool))
TEXT = _value("a non-empty string", lambda v: isinstance(v, str) and bool(v))
INCREASING_EPOCHS = _value(
    "a list of epochs (numbers >= 0) in increasing order",
    lambda v: isinstance(v, list | tuple) and all(_is_number(x) and x >= 0 for x in v) and list(v) == sorted(v),
)
LEARNING_RATES = _value(
    "a non-empty list of positive numbers",
    lambda v: isinstance(v, list | tuple) and bool(v) and all(_is_number(x) and x > 0 for x in v),
)
DEVICES = _value(
    'a list of distinct device names such as ["/gpu:0", "/gpu:1"]',
    lambda v: (
        isinstance(v, list | tuple) and bool(v) and all(isinstance(x, str) and x for x in v) and len(set(v)) == len(v)
    ),
)
MAPPING = _value("a mapping", lambda v: isinstance(v, dict))


# ---- blocks ----------------------------------------------------------------------------------------


class Block(BaseModel):
    """A mapping of the recipe: only its own keys, the required ones present."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    KIND: ClassVar[str] = "this block"
    """The block in words, for the messages: `a cosine schedule takes ...`."""
    EXAMPLE: ClassVar[str] = "{...}"
    NULLABLE: ClassVar[bool] = True
    """Whether the recipe may set the block to null (none)."""

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            nullable = "null or " if cls.NULLABLE else ""
            raise _problem(f" must be {nullable}a mapping such as {cls.EXAMPLE}; received {data!r}")
        return data

    @classmethod
    def keys_in_order(cls) -> list[str]:
        """The block's keys, its own first (`name` before all), then those of the blocks it extends."""
        keys: list[str] = []
        for klass in cls.__mro__:
            if isinstance(klass, type) and issubclass(klass, Block):
                own = inspect.get_annotations(klass)
                keys += [key for key in own if key in cls.model_fields and key not in keys]
        return keys

    @classmethod
    def required_keys(cls) -> list[str]:
        """The keys the block must have (`name` aside: it chose the block)."""
        return [key for key in cls.keys_in_order() if cls.model_fields[key].is_required() and key != "name"]


def _empty_is_none(value: Any) -> Any:
    """`{}` reads as null: the training code treats an empty block as none."""
    return None if value == {} else value


# ---- optimizer -------------------------------------------------------------------------------------


class KerasOptimizerOptions(Block):
    """Options every Keras optimizer takes (`keras.optimizers.Optimizer`), passed to it as they are."""

    weight_decay: optional(NON_NEGATIVE) = Field(
        None,
        description="Keras' decoupled weight decay of the optimizer, applied to every weight (not the "
        "recipe's `model.weight_decay`, the builders' L2 penalty on kernels).",
    )
    clipnorm: optional(POSITIVE) = Field(None, description="Clip each weight's gradient to this norm.")
    clipvalue: optional(POSITIVE) = Field(None, description="Clip each gradient value to [-clipvalue, clipvalue].")
    global_clipnorm: optional(POSITIVE) = Field(None, description="Clip the gradients to this global norm.")
    loss_scale_factor: optional(POSITIVE) = Field(
        None, description="Keras' fixed loss scale (float16 training scales dynamically without it)."
    )
    gradient_accumulation_steps: optional(_value("a whole number >= 2", lambda v: _is_whole(v) and v >= 2)) = Field(
        None, description="Update the weights every N steps with the gradients averaged over them."
    )


class Sgd(KerasOptimizerOptions):
    """`keras.optimizers.SGD`."""

    KIND: ClassVar[str] = "an sgd optimizer"
    EXAMPLE: ClassVar[str] = "{name: sgd, momentum: 0.9, nesterov: true}"
    NULLABLE: ClassVar[bool] = False

    name: one_of("sgd") = Field("sgd", description="Stochastic gradient descent (the default when `name` is left out).")
    momentum: FRACTION = Field(0.0, description="Momentum (0: none).")
    nesterov: BOOLEAN = Field(False, description="Nesterov momentum.")


class Adam(KerasOptimizerOptions):
    """`keras.optimizers.Adam`."""

    KIND: ClassVar[str] = "an adam optimizer"
    EXAMPLE: ClassVar[str] = "{name: adam}"
    NULLABLE: ClassVar[bool] = False

    name: one_of("adam") = Field(description="Adam.")
    beta_1: BELOW_ONE = Field(0.9, description="Decay of the first-moment estimates.")
    beta_2: BELOW_ONE = Field(0.999, description="Decay of the second-moment estimates.")
    epsilon: POSITIVE = Field(1e-7, description="Added to the denominator for numerical stability.")
    amsgrad: BOOLEAN = Field(False, description="The AMSGrad variant.")


class AdamW(Adam):
    """`keras.optimizers.AdamW`."""

    KIND: ClassVar[str] = "an adamw optimizer"
    EXAMPLE: ClassVar[str] = "{name: adamw, weight_decay: 0.004}"

    name: one_of("adamw") = Field(description="Adam with decoupled weight decay.")
    weight_decay: NON_NEGATIVE = Field(0.004, description="Decoupled weight decay, applied to every weight.")


OPTIMIZERS: dict[str, type[KerasOptimizerOptions]] = {"sgd": Sgd, "adam": Adam, "adamw": AdamW}
"""The optimizers a recipe names (`optimizer.name`), with their options."""


def _chosen_by_name(blocks: dict[str, type[Block]], default: str | None, example: str) -> Callable[[Any], Any]:
    """A check that the block is a mapping whose `name` (or `default`) is one of `blocks`."""

    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _problem(f" must be a mapping such as {example}; received {value!r}")
        if "name" not in value and default is None:
            raise _problem(f" is missing: it must be {alternatives(blocks)}", key="name")
        name = value.get("name", default)
        if name not in blocks:
            raise _problem(f" must be {alternatives(blocks)}; received {name!r}", key="name")
        return value

    return check


def _name_or(default: str | None) -> Callable[[Any], Any]:
    return lambda value: value.get("name", default) if isinstance(value, dict) else None


OptimizerBlock = Annotated[
    Union[tuple(Annotated[block, Tag(name)] for name, block in OPTIMIZERS.items())],  # noqa: UP007
    Discriminator(_name_or("sgd")),
    BeforeValidator(_chosen_by_name(OPTIMIZERS, "sgd", Sgd.EXAMPLE)),
    Kind("a mapping by `name`: see [optimizer](#optimizer)"),
]


# ---- schedule --------------------------------------------------------------------------------------


class Cosine(Block):
    """Linear warm-up from 0 to `peak_lr`, then cosine decay to `final_lr_fraction * peak_lr` at the last step."""

    KIND: ClassVar[str] = "a cosine schedule"
    EXAMPLE: ClassVar[str] = "{name: cosine, peak_lr: 0.1, warmup_epochs: 1}"
    NULLABLE: ClassVar[bool] = False

    name: one_of("cosine") = Field(description=__doc__)
    peak_lr: POSITIVE = Field(description="The highest learning rate, for the recipe's `batch_size`.")
    warmup_epochs: NON_NEGATIVE = Field(0, description="Epochs of linear warm-up from 0 (0: start at `peak_lr`).")
    final_lr_fraction: FRACTION = Field(0.0, description="The last step's rate, as a fraction of `peak_lr`.")


class _WithoutWarmup(Block):
    """A schedule without warm-up: it takes `warmup_epochs: 0` (the smoke env sets it on every recipe whose
    schedule warms up, and a claim or `--params` may then switch that schedule to another kind)."""

    warmup_epochs: _value("0", lambda v: _is_number(v) and v == 0) = Field(
        0, description="No warm-up: only 0, which the smoke env sets where the recipe's own schedule had one."
    )


class Piecewise(_WithoutWarmup):
    """`values[i]` until epoch `boundaries[i]`, then the next value (He et al. 2016: 0.1, /10 at epochs 82 and 123)."""

    KIND: ClassVar[str] = "a piecewise schedule"
    EXAMPLE: ClassVar[str] = "{name: piecewise, boundaries: [82, 123], values: [0.1, 0.01, 0.001]}"
    NULLABLE: ClassVar[bool] = False

    name: one_of("piecewise") = Field(description=__doc__)
    boundaries: INCREASING_EPOCHS = Field(description="The epochs at which the rate changes.")
    values: LEARNING_RATES = Field(description="The learning rates: one more than `boundaries`.")

    @model_validator(mode="after")
    def _one_value_more_than_boundaries(self) -> Self:
        if len(self.values) != len(self.boundaries) + 1:
            raise _problem(
                f" needs one value more than boundaries; received {len(self.boundaries)} boundaries and "
                f"{len(self.values)} values",
                key="values",
            )
        return self


class Constant(_WithoutWarmup):
    """`lr` throughout."""

    KIND: ClassVar[str] = "a constant schedule"
    EXAMPLE: ClassVar[str] = "{name: constant, lr: 0.001}"
    NULLABLE: ClassVar[bool] = False

    name: one_of("constant") = Field(description=__doc__)
    lr: POSITIVE = Field(description="The learning rate.")


class Triangular(_WithoutWarmup):
    """Linear from `start_fraction * peak_lr` to `peak_lr` at `peak_fraction` of the steps, then linear to
    `final_lr_fraction * peak_lr` at the last step (airbench's schedule; what a budget's `linear` schedule is)."""

    KIND: ClassVar[str] = "a triangular schedule"
    EXAMPLE: ClassVar[str] = "{name: triangular, peak_lr: 1.5, peak_fraction: 0.23}"
    NULLABLE: ClassVar[bool] = False

    name: one_of("triangular") = Field(description=__doc__)
    peak_lr: POSITIVE = Field(description="The highest learning rate, for the recipe's `batch_size`.")
    start_fraction: FRACTION = Field(0.0, description="The first step's rate, as a fraction of `peak_lr`.")
    peak_fraction: FRACTION = Field(0.25, description="Where the peak is, as a fraction of the steps.")
    final_lr_fraction: FRACTION = Field(0.0, description="The last step's rate, as a fraction of `peak_lr`.")


SCHEDULE_BLOCKS: dict[str, type[Block]] = {
    "cosine": Cosine,
    "piecewise": Piecewise,
    "constant": Constant,
    "triangular": Triangular,
}
"""The learning-rate schedules a recipe names (`schedule.name`), counted in epochs or fractions of the run."""

SCHEDULES = tuple(SCHEDULE_BLOCKS)

LEARNING_RATE_KEYS = ("peak_lr", "lr", "values")
"""The learning rates of a `schedule` block (cosine/triangular `peak_lr`, constant `lr`, piecewise `values`)."""

ScheduleBlock = Annotated[
    Union[tuple(Annotated[block, Tag(name)] for name, block in SCHEDULE_BLOCKS.items())],  # noqa: UP007
    Discriminator(_name_or(None)),
    BeforeValidator(_chosen_by_name(SCHEDULE_BLOCKS, None, Cosine.EXAMPLE)),
    Kind("a mapping by `name`: see [schedule](#schedule)"),
]


# ---- the other blocks ------------------------------------------------------------------------------

PAD_MODES = ("constant", "reflect")
ALTERNATING = "alternating"
"""`horizontal_flip: alternating`: each image mirrored in every other epoch, starting from a seeded coin."""


class Augmentation(Block):
    """Batch-wise augmentation inside the compiled train step, on the accelerator (training only); alternating
    flips are the input pipeline's (they need each image's index and the epoch)."""

    KIND: ClassVar[str] = "augmentation"
    EXAMPLE: ClassVar[str] = "{pad_crop: 4, horizontal_flip: true}"

    pad_crop: WHOLE_NON_NEGATIVE = Field(0, description="Pad by this many pixels and crop back at a random offset.")
    pad_mode: one_of(*PAD_MODES) = Field(
        "constant", description="How the border is filled: zeros (He et al.) or by reflection (airbench)."
    )
    horizontal_flip: one_of(True, False, ALTERNATING) = Field(
        False,
        description="Mirror half the images: a fresh coin per image and step (`true`), or each image in every "
        "other epoch from a seeded first orientation (`alternating`, airbench; on the input pipeline).",
    )


class Lookahead(Block):
    """Every `every` steps the weights move to their running average, with `alpha = decay * (step / steps) ** power`
    (airbench)."""

    KIND: ClassVar[str] = "lookahead"
    EXAMPLE: ClassVar[str] = "{every: 5, decay: 0.7738, power: 3}"

    every: WHOLE_POSITIVE = Field(5, description="Steps between two pulls to the average.")
    decay: BELOW_ONE = Field(0.95**5, description="The averaging weight at the last step.")
    power: NON_NEGATIVE = Field(3.0, description="How late the averaging grows (0: `decay` throughout).")


def monitored_direction(monitor: str) -> str:
    """`min` for a loss, `max` for an accuracy (`val_` or not): what Keras' `mode: auto` infers for them.

    Raises:
        ValueError: any other metric, whose direction the recipe must give.
    """
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith("_loss"):
        return "min"
    if name == "accuracy" or name.endswith("_accuracy"):
        return "max"
    raise ValueError(
        f"early stopping cannot tell whether {monitor!r} should fall or rise: give the recipe's early_stopping "
        f"mode: min or mode: max. Received: monitor={monitor!r}, mode='auto'"
    )


class EarlyStopping(Block):
    """Keras' `EarlyStopping`; after a resume it counts the epochs before the interruption from the checkpoint."""

    KIND: ClassVar[str] = "early_stopping"
    EXAMPLE: ClassVar[str] = "{monitor: val_loss, patience: 10}"

    monitor: TEXT = Field("val_loss", description="The epoch metric watched (`val_loss`, `val_accuracy`, ...).")
    patience: WHOLE_NON_NEGATIVE = Field(0, description="Epochs without improvement before training stops.")
    min_delta: NUMBER = Field(0, description="The least change that counts as an improvement.")
    mode: one_of("auto", "min", "max") = Field(
        "auto", description="Whether the metric should fall or rise; `auto` knows losses and accuracies only."
    )
    baseline: optional(NUMBER) = Field(None, description="Stop unless the metric beats this value.")
    restore_best_weights: BOOLEAN = Field(
        True, description="End with the best epoch's weights (Keras' default is false; convbench's is true)."
    )
    start_from_epoch: WHOLE_NON_NEGATIVE = Field(0, description="Epochs before any improvement is looked for.")
    verbose: one_of(0, 1) = Field(1, description="Log when training stops.")

    @model_validator(mode="after")
    def _direction_known(self) -> Self:
        if self.mode == "auto":
            try:
                monitored_direction(self.monitor)
            except ValueError as error:
                raise _problem(f": {error}") from None
        return self


class Ema(Block):
    """Evaluate and save the exponential moving average of the weights (Keras' optimizer `use_ema`)."""

    KIND: ClassVar[str] = "ema"
    EXAMPLE: ClassVar[str] = "{decay: 0.999}"

    decay: OPEN_FRACTION = Field(description="After each step: `average = decay * average + (1 - decay) * weight`.")


class Tta(Block):
    """Test-time augmentation: `test_tta_accuracy` from the softmax averaged over flipped and shifted copies
    (`test_accuracy` stays without it)."""

    KIND: ClassVar[str] = "tta"
    EXAMPLE: ClassVar[str] = "{flip: true, translate: 1}"

    flip: BOOLEAN = Field(False, description="Average over each image and its mirror image.")
    translate: optional(WHOLE_NON_NEGATIVE) = Field(
        0,
        description="Also over copies moved by (+t, +t) and (-t, -t) pixels, t smaller than the image (0 or null: none).",
    )


class FineTuning(Block):
    """Transfer learning: a second phase training the whole network after the first trained the new head on
    the frozen pretrained base. Merged over the recipe key by key (a block with another `name` replaces its
    own); the merged phase is checked as a recipe."""

    KIND: ClassVar[str] = "fine_tuning"
    EXAMPLE: ClassVar[str] = "{epochs: 20, schedule: {name: cosine, peak_lr: 1.0e-5}}"

    epochs: optional(WHOLE_POSITIVE) = Field(None, description="The phase's epochs (null: the recipe's).")
    optimizer: optional(MAPPING) = Field(None, description="Merged over the recipe's `optimizer`.")
    schedule: optional(MAPPING) = Field(None, description="Merged over the recipe's `schedule`.")
    batch_size: optional(WHOLE_POSITIVE) = Field(None, description="The phase's batch size (null: the recipe's).")
    eval_batch_size: optional(WHOLE_POSITIVE) = Field(
        None, description="The phase's evaluation batch size (null: the recipe's)."
    )


BUDGET_SCHEDULES = ("linear", "recipe")


class Budget(Block):
    """A training budget: the epochs that fit replace the recipe's and the schedule is stretched to end there
    (`convbench.training.budget`). The budget, the epochs trained and any overrun go to MLflow and the
    leaderboard, which ranks at equal budget."""

    KIND: ClassVar[str] = "a budget"
    EXAMPLE: ClassVar[str] = "{minutes: 10}"

    minutes: optional(POSITIVE, say_null=False) = Field(
        None,
        description="Calibrated on a few timed steps of the real model into the epochs that fit. When not one "
        "epoch fits, the steps that do are trained (`steps_per_epoch`), logged as `epoch_fraction`.",
    )
    epochs: optional(WHOLE_POSITIVE, say_null=False) = Field(None, description="Train this many epochs.")
    schedule: one_of(*BUDGET_SCHEDULES) = Field(
        "linear",
        description="`linear`: the recipe's warm-up fraction, then linear decay to zero at the last step (Li et "
        "al. 2020, Budgeted Training); `recipe`: the recipe's own schedule, its epoch points scaled.",
    )

    @model_validator(mode="after")
    def _minutes_or_epochs(self) -> Self:
        if (self.minutes is None) == (self.epochs is None):
            raise _problem(
                f" needs exactly one of minutes and epochs; received {self.model_dump(exclude_unset=True)!r}"
            )
        return self


STRATEGIES = ("mirrored",)
SCALES = ("linear", "none")


class Distribute(Block):
    """One training on every GPU of the machine (`convbench.training.distribute`, docs/scaling.md)."""

    KIND: ClassVar[str] = "distribute"
    EXAMPLE: ClassVar[str] = "{strategy: mirrored}"

    strategy: one_of(*STRATEGIES) = Field(description="`tf.distribute.MirroredStrategy`: one replica per device.")
    devices: optional(DEVICES) = Field(None, description="The devices to mirror on (null: every GPU of the machine).")
    scale: one_of(*SCALES) = Field(
        "linear",
        description="`linear`: `batch_size` and `eval_batch_size` are per replica and every schedule learning "
        "rate is multiplied by the replicas (Goyal et al. 2017); `none`: `batch_size` is the global batch, "
        "learning rates unchanged.",
    )
    replicas: optional(WHOLE_POSITIVE) = Field(
        None, description="Written by `resolve_recipe`: the replicas the recipe was scaled for (not set by hand)."
    )
    learning_rate_factor: optional(WHOLE_POSITIVE) = Field(
        None, description="Written by `resolve_recipe`: what the learning rates were multiplied by."
    )


def _block(block: type[Block], words: str) -> Any:
    """An optional block of the recipe: null or `{}` for none."""
    return Annotated[Union[block, None], BeforeValidator(_empty_is_none), Kind(words)]  # noqa: UP007


AugmentationBlock = _block(Augmentation, "null, {} or a mapping: see [augmentation](#augmentation)")
LookaheadBlock = _block(Lookahead, "null, {} or a mapping: see [lookahead](#lookahead)")
EarlyStoppingBlock = _block(EarlyStopping, "null, {} or a mapping: see [early_stopping](#early_stopping)")
EmaBlock = _block(Ema, "null, {} or a mapping: see [ema](#ema)")
TtaBlock = _block(Tta, "null, {} or a mapping: see [tta](#tta)")
FineTuningBlock = _block(FineTuning, "null, {} or a mapping: see [fine_tuning](#fine_tuning)")
BudgetBlock = _block(Budget, "null, {} or a mapping: see [budget](#budget)")
DistributeBlock = Annotated[
    Union[Distribute, None],  # noqa: UP007
    Kind("null or a mapping: see [distribute](#distribute)"),
]


# ---- the recipe ------------------------------------------------------------------------------------


class Recipe(Block):
    """A recipe: `training.<architecture>` merged with the dataset's overrides, conf/<env> and --params."""

    KIND: ClassVar[str] = "a recipe"
    EXAMPLE: ClassVar[str] = "{model: {...}, optimizer: {name: sgd}, schedule: {...}, epochs: 100, ...}"
    NULLABLE: ClassVar[bool] = False

    model: optional(MAPPING) = Field(
        None,
        description="The builder's hyperparameters: keyword arguments of `build_<name>` (see its docstring); "
        "their names are checked against the builder's signature.",
    )
    optimizer: OptimizerBlock = Field(description="The optimizer by `name`, with its options.")
    schedule: ScheduleBlock = Field(description="The learning-rate schedule by `name`, stepped every batch.")
    epochs: WHOLE_POSITIVE = Field(description="Epochs to train (a budget may replace them).")
    batch_size: WHOLE_POSITIVE = Field(
        description="Images per training step; the learning rates are for this batch size (per replica "
        "with `distribute.scale: linear`)."
    )
    eval_batch_size: WHOLE_POSITIVE = Field(description="Images per validation and test batch.")
    label_smoothing: FRACTION = Field(0.0, description="Label smoothing of the training loss (not of `loss`).")
    augmentation: AugmentationBlock = Field(None, description="On-device augmentation while training.")
    lookahead: LookaheadBlock = Field(None, description="Pull the weights to their running average (airbench).")
    early_stopping: EarlyStoppingBlock = Field(None, description="Stop when a validation metric stops improving.")
    ema: EmaBlock = Field(None, description="Evaluate and save the moving average of the weights.")
    tta: TtaBlock = Field(None, description="Also report `test_tta_accuracy` (test-time augmentation).")
    fine_tuning: FineTuningBlock = Field(None, description="Transfer learning only: the second phase.")
    budget: BudgetBlock = Field(
        None,
        description="Train within minutes or epochs. For a whole run: `--params=training.budget.minutes=10` "
        "(every recipe gets it unless the run gives one its own).",
    )
    steps_per_epoch: optional(WHOLE_POSITIVE) = Field(
        None, description="Train only the first N batches of each epoch's order (null: every batch)."
    )
    mixed_precision: one_of(*MIXED_PRECISION, None) = Field(
        None,
        description="Layers compute in 16 bits, weights and the softmax stay float32; float16 trains with "
        "dynamic loss scaling (null: float32). Off by default: on a 2-core CPU with bfloat16 instructions only "
        "airbench gains (bfloat16, 1.35-1.66x; 10 minutes then hold 6 epochs instead of 3, 92.1% validation "
        "accuracy with TTA against 88.6%); float16 and XLA slow every model (benchmarks/README.md).",
    )
    jit_compile: one_of("auto", True, False) = Field(
        "auto", description="XLA: `auto` where Keras deems it safe (never on a CPU)."
    )
    distribute: DistributeBlock = Field(
        None,
        description="One training on every GPU of the machine (null: one device); recipe.json holds the scaled "
        "batch sizes and learning rates. E.g. `--params=training.resnet.distribute.strategy=mirrored`.",
    )
    seed: WHOLE_NON_NEGATIVE = Field(description="Seeds the initial weights, the data order and augmentation.")
    label_mode: one_of(*LABEL_MODES, None) = Field(
        None,
        description="Crowd-labelled datasets: `preprocessing.<dataset>.label_mode`, added by `resolve_recipe` "
        "(it picks the loss and how targets are drawn); not set by hand.",
    )
    smoke: optional(MAPPING) = Field(
        None,
        description="What the smoke env changes besides one short epoch of batch 64 (`convbench.config."
        "SMOKE_RECIPE`): recipe keys, usually smaller `model` sizes where building the model on a CPU is slow. "
        "Merged over the recipe there; removed from resolved recipes.",
    )


PHASES = {"fine_tuning": "the fine-tuning phase", "smoke": "the smoke env's recipe"}
"""Blocks merged over the recipe elsewhere: the merged recipe is checked too."""


# ---- checking --------------------------------------------------------------------------------------

_TAGS = {*OPTIMIZERS, *SCHEDULE_BLOCKS}


def _path(where: str, location: tuple[Any, ...], data: Any, key: str | None) -> str:
    """The key path of an error: `where`, then the keys of `location` that are keys of `data` (not union tags)."""
    parts = [where] if where else []
    for item in location:
        if isinstance(data, dict) and item not in data and item in _TAGS:
            continue  # which block of a union the error is in, not a key
        parts.append(str(item))
        data = data.get(item) if isinstance(data, dict) else data[item] if isinstance(data, list) else None
    if key:
        parts.append(key)
    return ".".join(parts) or "recipe"


def _blocks_in(annotation: Any) -> list[type[Block]]:
    """The blocks a field's type may hold (several for a block chosen by `name`)."""
    if isinstance(annotation, type) and issubclass(annotation, Block):
        return [annotation]
    return [block for argument in get_args(annotation) for block in _blocks_in(argument)]


def _block_at(root: Any, location: tuple[Any, ...]) -> type[Block] | None:
    """The block an error's `location` (from the root type `root`) is inside of."""
    candidates = _blocks_in(root)
    for item in location:
        if len(candidates) > 1:
            candidates = [block for block in candidates if item in _TAGS and _tag_of(block) == item]
            continue
        if len(candidates) != 1 or item not in candidates[0].model_fields:
            return None
        candidates = _blocks_in(candidates[0].model_fields[item].annotation)
    return candidates[0] if len(candidates) == 1 else None


def _tag_of(block: type[Block]) -> str | None:
    return next((name for name, known in {**OPTIMIZERS, **SCHEDULE_BLOCKS}.items() if known is block), None)


def _problems(error: ValidationError, data: Any, where: str, root: Any) -> list[str]:
    """One line per error of `error` (validating `data` as `root`), each starting with its key path."""
    lines = []
    for detail in error.errors():
        location, context = detail["loc"], detail.get("ctx") or {}
        if detail["type"] == "recipe":
            lines.append(_path(where, location, data, context.get("key")) + context["message"])
            continue
        block = _block_at(root, location[:-1])
        path = _path(where, location, data, None)
        if detail["type"] == "extra_forbidden" and block is not None:
            known = block.keys_in_order()
            close = difflib.get_close_matches(str(location[-1]), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            lines.append(f"{path} is unknown{hint}: {block.KIND} takes {alternatives(known)}")
        elif detail["type"] == "missing" and block is not None:
            lines.append(f"{path} is missing: {block.KIND} needs {_conjunction(block.required_keys(), 'and')}")
        else:
            lines.append(f"{path}: {detail['msg']}; received {detail.get('input')!r}")
    return lines


def _validated(root: Any, data: Any, where: str) -> tuple[Any, list[str]]:
    try:
        return _ADAPTERS[root].validate_python(data), []
    except ValidationError as error:
        return None, _problems(error, data, where, root)


def check_recipe(recipe: Any, where: str = "", architecture: str | None = None) -> Recipe:
    """`recipe` checked against the schema; the recipe itself is not changed.

    Args:
        recipe: A resolved recipe (`resolve_recipe`), or a raw one with its `smoke:` block.
        where: The recipe's key path, which every problem's path starts with (`training.resnet`).
        architecture: The architecture the recipe trains: the `model` keys are checked against its builder.

    A `fine_tuning` block (and a `smoke` block) is also checked merged over the recipe, as the second
    phase (and the smoke env) will train it.

    Raises:
        RecipeError: every problem found, each naming its key path and what the key takes.
    """
    checked, problems = _validated(Recipe, recipe, where)
    if isinstance(recipe, dict) and isinstance(recipe.get("model"), dict):
        problems += _model_problems(recipe["model"], where, architecture)
    if checked is not None:
        for phase in PHASES:
            if recipe.get(phase):
                problems += _phase_problems(recipe, phase, where, architecture)
    if problems:
        raise RecipeError(problems, where or "the recipe")
    return checked


def _model_problems(model: dict[str, Any], where: str, architecture: str | None) -> list[str]:
    """The `model` keys that `architecture`'s builder does not take."""
    if architecture is None:
        return []
    taken = hyperparameters(architecture)
    if taken is None:  # the builder takes any keyword
        return []
    prefix = f"{where}.model" if where else "model"
    builder = get_builder(architecture).__name__
    problems = []
    for key in model:
        if key not in taken:
            close = difflib.get_close_matches(str(key), taken, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{prefix}.{key} is unknown{hint}: {builder} takes {alternatives(taken)}")
    return problems


def _phase_problems(recipe: dict[str, Any], phase: str, where: str, architecture: str | None) -> list[str]:
    """Problems of the recipe `phase` (fine_tuning, smoke) makes, each under `<where>.<phase>` when it set the key."""
    own = {key: value for key, value in recipe.items() if key not in PHASES}
    merged = deep_merge(own, recipe[phase])
    _, problems = _validated(Recipe, merged, "")
    problems += _model_problems(merged.get("model") or {}, "", architecture)
    located = []
    for problem in problems:
        key = problem.split(".", 1)[0].split(" ", 1)[0]
        inside = f"{phase}." if key in recipe[phase] else ""
        located.append(f"{where + '.' if where else ''}{inside}{problem} (in {PHASES[phase]})")
    return located


BLOCKS: dict[str, Any] = {
    "optimizer": OptimizerBlock,
    "schedule": ScheduleBlock,
    "augmentation": AugmentationBlock,
    "lookahead": LookaheadBlock,
    "early_stopping": EarlyStoppingBlock,
    "ema": EmaBlock,
    "tta": TtaBlock,
    "budget": BudgetBlock,
    "distribute": DistributeBlock,
}
"""The recipe's blocks, each checked as the recipe checks it (`check_block`)."""

_ADAPTERS = {root: TypeAdapter(root) for root in (Recipe, *BLOCKS.values())}


def check_block(name: str, value: Any, where: str | None = None) -> Any:
    """The recipe block `name` (`optimizer`, `schedule`, `budget`, ...) checked: its model, with the defaults
    of the keys it leaves out, or None for none (null or `{}` where the recipe reads them as none).

    Raises:
        RecipeError: every problem, each under `where` (default: `name`).
    """
    checked, problems = _validated(BLOCKS[name], value, name if where is None else where)
    if problems:
        raise RecipeError(problems, where or name)
    return checked


# ---- the reference ---------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default
    return "—" if value is PydanticUndefined else f"`{yaml_text(value)}`"


def _table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    rows = ["| key | takes | default | what it does |", "|---|---|---|---|"]
    for name in model.keys_in_order():
        if name in skip:
            continue
        field = model.model_fields[name]
        takes = next(item.words for item in field.metadata if isinstance(item, Kind))
        rows.append(f"| `{name}` | {_cell(takes)} | {_default(field)} | {_cell(field.description or '')} |")
    return rows


def _first_line(text: str | None) -> str:
    return " ".join((text or "").split())


def markdown() -> str:
    """docs/recipe.md: every recipe key with what it takes, its default and what it does, from the schema."""
    lines = [
        "# Recipe keys",
        "",
        "<!-- Written by `python -m convbench.training.recipe > docs/recipe.md` from the schema in",
        "     src/convbench/training/recipe.py; tests/training/test_recipe.py fails when they differ. -->",
        "",
        "A recipe is `training.<architecture>` in `conf/base/parameters_training.yml`. Precedence, lowest",
        "first: the recipe < the dataset's `recipe_overrides` (`convbench/dataset_specs.py`, e.g. no flips on",
        "MNIST) < conf/<env> (conf/local, conf/smoke) < `--params`, merged key by key (a block whose `name`",
        "changes is replaced whole). `resolve_recipe` checks the merged recipe against this schema before",
        "anything trains and saves it with the model (`06_models/<dataset>/<arch>/recipe.json`, MLflow). A",
        "problem names its key path and what the key takes, e.g.",
        "",
        "```",
        "training.resnet.optimizer.name must be sgd, adam or adamw; received 'sgdd'",
        "```",
        "",
        "Unknown keys are refused (a typo is an error), and so are values of the wrong kind (`true` is not a",
        "number, `2.5` is not a whole number). Override any value with `--params`, e.g.",
        "`kedro run --pipelines=cifar10_resnet --params=training.resnet.epochs=30`.",
        "",
        "## The recipe",
        "",
        _first_line(Recipe.__doc__),
        "",
        *_table(Recipe),
        "",
        "`model` keys are the keyword arguments of the architecture's builder (`build_<name>` in",
        "`src/convbench/models/`), checked against its signature.",
        "",
        "## optimizer",
        "",
        "`name` picks the Keras optimizer; the other keys are passed to it as they are. The learning rate",
        "comes from `schedule`; `ema` (below) is the moving average of the weights.",
    ]
    for name, block in OPTIMIZERS.items():
        lines += ["", f"### {name}", "", _first_line(block.__doc__), "", *_table(block)]
    lines += ["", "## schedule", "", "`name` picks the schedule; epochs may be fractions."]
    for name, block in SCHEDULE_BLOCKS.items():
        lines += ["", f"### {name}", "", _first_line(block.__doc__), "", *_table(block, skip=("name",))]
    for name, block in (
        ("augmentation", Augmentation),
        ("lookahead", Lookahead),
        ("early_stopping", EarlyStopping),
        ("ema", Ema),
        ("tta", Tta),
        ("fine_tuning", FineTuning),
        ("budget", Budget),
        ("distribute", Distribute),
    ):
        lines += ["", f"## {name}", "", _first_line(block.__doc__), "", *_table(block)]
        if name == "budget":
            lines += [
                "",
                "Exactly one of `minutes` and `epochs`. `training.budget` (not a recipe) is the whole run's",
                "budget, with the same keys: every recipe gets it unless the run env or `--params` gives that",
                "recipe its own (`--params=training.budget.minutes=10`).",
            ]
    return "\n".join(lines) + "\n"


def main() -> int:
    """`python -m convbench.training.recipe`: docs/recipe.md on stdout."""
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
