"""Property-based: a CSV log line reads back (csv module) to the neutralised fields, and restore() gives each value back."""

import csv
import io

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.logs.rolling import csv_field, csv_line, neutralise, restore

fields = st.text(alphabet=st.one_of(st.sampled_from("=+-@'\t ,\"\r\nab"), st.characters(blacklist_categories=("Cs",))), max_size=12)


@given(st.lists(fields, min_size=2, max_size=6))  # a line of one empty field is no line at all
@example(["'=1", "''", "-", " x", "a,b"])
def test_a_line_reads_back_to_its_values(values):
    line = csv_line(values)
    assert line == ",".join(csv_field(v) for v in values)
    row = next(csv.reader(io.StringIO(line + "\r\n", newline=""), strict=True))
    assert [restore(v) for v in row] == values
    assert all(v[:1] not in ("=", "+", "-", "@", "\t") for v in row)


@given(fields)
def test_restore_of_neutralise_is_the_value(value):
    assert restore(neutralise(value)) == value
