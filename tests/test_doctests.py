"""The ``>>>`` examples in the docstrings of the public layers run, and print what they say."""

import doctest
import importlib
import pkgutil

import pytest
import torch

PACKAGES = ("pixelgroup.ops", "pixelgroup.losses", "pixelgroup.models", "pixelgroup.postprocess")
EXTRA_MODULES = (
    "pixelgroup.engine.export",
    "pixelgroup.data.resized_windows",
    "pixelgroup.data.transforms",
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        path = importlib.import_module(package).__path__
        names += [info.name for info in pkgutil.walk_packages(path, f"{package}.")]
    return names + list(EXTRA_MODULES)


def _examples(name: str) -> list[doctest.DocTest]:
    # the finder keeps the objects defined in the module: a package's re-exports are not
    # run twice
    tests = doctest.DocTestFinder(exclude_empty=True).find(importlib.import_module(name), name)
    return [t for t in tests if t.examples]


MODULES = [name for name in _module_names() if _examples(name)]


def test_the_public_layers_have_examples():
    assert {"pixelgroup.ops.mean_shift", "pixelgroup.postprocess.grouping"} <= set(MODULES)


@pytest.mark.parametrize(
    "name",
    MODULES,
)
def test_docstring_examples(name):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in _examples(name):
        torch.manual_seed(0)  # examples draw random tensors; keep their output stable
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
