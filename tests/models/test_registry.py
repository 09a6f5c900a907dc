import functools
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from convbench import config
from convbench.config import ConvbenchConfigLoader
from convbench.models.registration import Registration, architecture, registration
from convbench.models.registry import ARCHITECTURES, MODULE_ORDER, discover, get_builder
from convbench.settings import CONFIG_LOADER_ARGS

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture(scope="module")
def recipes():
    """The base recipes as `kedro run` loads them (the recipe's checks live in tests/test_config.py)."""
    return config.recipes(ConvbenchConfigLoader(str(CONF), env="base", **CONFIG_LOADER_ARGS)["parameters"])


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Known architectures: .*densenet.*xception"):
        get_builder("lenet")


def test_file_checks_fail_fast_on_missing_imagenet_weights_and_pass_otherwise(tmp_path, monkeypatch, recipes):
    from convbench.models.registry import check_files, needs_files
    from convbench.pipelines.training.nodes import check_model_files

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert needs_files("mobilenet_v2_imagenet") and needs_files("mobilenet_v2") and not needs_files("resnet")
    with pytest.raises(FileNotFoundError, match=r"MobileNetV2 ImageNet weights not found at .*1\.0_96_no_top\.h5"):
        check_model_files(recipes["mobilenet_v2_imagenet"], "mobilenet_v2_imagenet")
    check_files("mobilenet_v2", recipes["mobilenet_v2"]["model"])  # from scratch: nothing to read
    check_files("resnet", recipes["resnet"]["model"])
    weights = tmp_path / "own.h5"
    weights.write_bytes(b"stand-in")
    check_files("mobilenet_v2", {"weights": "imagenet", "weights_file": str(weights)})  # defaults filled in
    with pytest.raises(FileNotFoundError, match=r"0\.35_128_no_top\.h5"):
        check_files("mobilenet_v2", {"weights": "imagenet", "alpha": 0.35, "input_size": 128})


# --- registration: @architecture in the builder module, discovery by the registry ---------------------------------


BUILT_IN = [
    "mlp",
    "residual_mlp",
    "simple_cnn",
    "alexnet",
    "vgg13",
    "vgg16",
    "inception",
    "resnet",
    "resnet_v2",
    "preact_resnet",
    "xception",
    "densenet",
    "mobilenet_v2",
    "mobilenet_v2_imagenet",
    "hierarchical",
    "airbench",
]


def test_architectures_are_listed_by_module_then_in_definition_order():
    """The built-in families in `MODULE_ORDER`; a user's new module (not listed there) comes after them."""
    assert [name for name in ARCHITECTURES if name in BUILT_IN] == BUILT_IN
    module_of = {name: builder.__module__.rsplit(".", 1)[-1] for name, builder in ARCHITECTURES.items()}
    listed = [name for name in ARCHITECTURES if module_of[name] in MODULE_ORDER]
    assert list(ARCHITECTURES)[: len(listed)] == listed
    assert [MODULE_ORDER.index(module_of[name]) for name in listed] == sorted(
        MODULE_ORDER.index(module_of[name]) for name in listed
    )


def test_each_builder_is_registered_under_its_names_by_its_own_module():
    for name, builder in ARCHITECTURES.items():
        assert name in registration(builder).names
        assert builder.__module__.rsplit(".", 1)[0] == "convbench.models"


def test_the_order_does_not_depend_on_which_builder_module_is_imported_first():
    code = (
        "import convbench.models.vgg, convbench.models.hierarchical; "
        "from convbench.models.registry import ARCHITECTURES; print(','.join(ARCHITECTURES))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.strip().splitlines()[-1].split(",") == list(ARCHITECTURES)


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """Makes a package of the given modules (file name -> source, `PACKAGE` standing for its name) importable."""
    packages = []

    def make(modules: dict[str, str]) -> str:
        package = f"zoo_{uuid.uuid4().hex}"
        folder = tmp_path / package
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        for file_name, source in modules.items():
            (folder / file_name).write_text(textwrap.dedent(source).replace("PACKAGE", package))
        packages.append(package)
        return package

    monkeypatch.syspath_prepend(str(tmp_path))
    yield make
    for module in [name for name in sys.modules if name.split(".")[0] in packages]:
        del sys.modules[module]


TOY = """
    from convbench.models.registration import architecture


    @architecture("toy", "toy_wide")
    def build_toy(input_shape, num_classes, *, width=1):
        ...
"""


def test_a_decorated_builder_in_a_new_module_is_found_without_any_other_edit(zoo):
    alpha = """
        from convbench.models.registration import architecture
        from PACKAGE.toy import build_toy  # counted where it is defined, not here


        @architecture("beta")
        def build_beta(input_shape, num_classes): ...


        @architecture("alpha")
        def build_alpha(input_shape, num_classes): ...
    """
    package = zoo({"toy.py": TOY, "alpha.py": alpha, "helpers.py": "def build_nothing(input_shape, num_classes): ..."})
    found = discover(package)
    assert list(found) == ["beta", "alpha", "toy", "toy_wide"]  # modules by name, then in definition order
    assert found["toy"] is found["toy_wide"] is sys.modules[f"{package}.toy"].build_toy
    assert list(discover(package, ["toy"])) == ["toy", "toy_wide", "beta", "alpha"]  # listed modules first


def test_a_name_registered_twice_is_refused_naming_both_builders(zoo):
    other = """
        from convbench.models.registration import architecture


        @architecture("toy")
        def build_other_toy(input_shape, num_classes): ...
    """
    package = zoo({"toy.py": TOY, "zz_other.py": other})
    with pytest.raises(
        ValueError,
        match=rf"'toy' is registered twice: by {package}\.toy\.build_toy and by {package}\.zz_other\.build_other_toy",
    ):
        discover(package)


def test_the_module_order_names_only_existing_modules(zoo):
    package = zoo({"toy.py": TOY})
    with pytest.raises(ValueError, match="does not have: lenet"):
        discover(package, ["lenet", "toy"])


def test_the_decorator_marks_the_builder_and_returns_it_unchanged():
    def check(**hyperparameters):
        pass

    def build(input_shape, num_classes): ...

    assert architecture("first", "second", file_check=check)(build) is build
    assert registration(build) == Registration(("first", "second"), check)
    assert registration(lambda: None) is None and registration(ARCHITECTURES) is None


@pytest.mark.parametrize(
    ("names", "match"),
    [
        ((), "at least one name"),
        (("res-net",), "identifiers"),
        (("training.resnet",), "identifiers"),
        (("",), "identifiers"),
        ((20,), "identifiers"),
        (("resnet", "resnet_v2", "resnet"), "more than once: resnet"),
    ],
)
def test_the_decorator_refuses_bad_names(names, match):
    with pytest.raises(ValueError, match=match):
        architecture(*names)


def test_the_decorator_refuses_a_second_registration_and_non_functions():
    @architecture("toy")
    def build(input_shape, num_classes): ...

    with pytest.raises(TypeError, match=r"already registered as toy; give all its names in one @architecture"):
        architecture("toy_wide")(build)
    with pytest.raises(TypeError, match="builder functions"):
        architecture("toy")(functools.partial(build, (32, 32, 3)))
    with pytest.raises(TypeError, match="file_check must be callable"):
        architecture("toy", file_check="require_weights")


def test_file_checks_come_from_the_decorator_and_see_the_builder_defaults(tmp_path, monkeypatch):
    from convbench.models.mobilenet import build_mobilenet_v2, require_imagenet_weights
    from convbench.models.registry import FILE_CHECKS, check_files, needs_files

    assert list(FILE_CHECKS.items()) == [(build_mobilenet_v2, require_imagenet_weights)]
    assert [name for name in ARCHITECTURES if needs_files(name)] == ["mobilenet_v2", "mobilenet_v2_imagenet"]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    check_files("resnet", {"depth": 56})  # no check: nothing happens
    check_files("mobilenet_v2_imagenet", {})  # weights=None by default: nothing to read
    with pytest.raises(FileNotFoundError, match=r"1\.0_96_no_top\.h5"):  # alpha and input_size defaults
        check_files("mobilenet_v2_imagenet", {"weights": "imagenet"})
