"""The stops of the prompt-based infill: cut where the suffix's own text begins."""

from __future__ import annotations

import pytest

from adapters.llamacpp.infill import FENCE, infill_stops, suffix_stop


@pytest.mark.parametrize(
    ("suffix", "stop"),
    [
        ("\n    return result\n", "return result"),
        ("\n\n\nprint(circle_area(2.0))\n", "print(circle_area(2.0))"),
        # a short first line takes the next lines with it, so a lone brace cuts nothing
        ("\n}\n\nconsole.log(add(1, 2));\n", "}\n\nconsole.log(add(1, 2));"),
        ("}", "}"),
        (". It is known for the Eiffel Tower.", ". It is known for the Eiffel Tower."),
        ("x" * 300, "x" * 200),
        (" \n\t\n", None),
    ],
)
def test_the_stop_is_the_start_of_the_suffix(suffix: str, stop: str | None) -> None:
    assert suffix_stop(suffix) == stop
    if stop is not None:
        assert stop in suffix  # so text cut before it cannot contain the suffix


def test_the_code_block_end_always_stops() -> None:
    assert infill_stops("\n    return result\n") == [FENCE, "return result"]
    assert infill_stops("\n\n") == [FENCE]
