"""The check every parser test makes: the parser returned exactly these keys, equal to the expected values.

Import as ``import parsed_arrays`` (``tests/`` is on pytest's ``pythonpath``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def assert_same(result: dict, expected: dict, keys: Iterable[str] | None = None) -> None:
    """`result` has exactly `keys` (default: `expected`'s), each equal to `expected`'s; arrays also in dtype."""
    keys = set(expected) if keys is None else set(keys)
    assert set(result) == keys and keys <= set(expected)
    for key in sorted(keys):
        value = expected[key]
        if isinstance(value, np.ndarray):
            assert result[key].dtype == value.dtype, key
            np.testing.assert_array_equal(result[key], value, err_msg=key)
        else:
            assert result[key] == value, key
