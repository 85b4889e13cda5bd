"""What a value that cannot be read is told, in words, for every field: never a Python type
(the issue's 'readable as tuple[int, ...]')."""

from __future__ import annotations

import re

import pytest

from mlpmnist.config import FIELDS, choices, field_types, parse_value


@pytest.mark.parametrize("name", [n for n in FIELDS if field_types()[n] is not str and not choices(n)])
def test_an_unreadable_value_is_told_in_words(name):
    with pytest.raises(ValueError) as e:
        parse_value(name, "x?")
    message = str(e.value)
    assert message.startswith(f"{name} must be ") and message.endswith("; got 'x?'")
    assert not re.search(r"\b(int|float|bool|str|tuple)\b|\[|\.\.\.", message), message


def test_the_words_say_how_to_write_it():
    with pytest.raises(ValueError, match=r"seeds must be whole numbers, such as 0 1 2 or a range 0-9"):
        parse_value("seeds", "a-b")
    with pytest.raises(ValueError, match=r"lr must be a number, or one number per seed"):
        parse_value("lr", "fast")
