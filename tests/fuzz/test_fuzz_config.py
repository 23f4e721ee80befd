"""
Property-based: the config loader (gateway/config/) turns any document
into a Config or a ConfigError naming file, key and reason; nothing else
escapes (a traceback at start-up helps no admin).
"""

import copy
import tomllib

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.config import Config, ConfigError, default_config_path, load_config, parse_config

SAMPLE = tomllib.loads(default_config_path().read_text())
SAMPLE["server"]["fqdn"] = "mail.corp.example"  # no DNS lookup per example

scalars = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70), st.booleans(), st.floats(allow_nan=True), st.text(max_size=30),
    st.sampled_from(["", "unlimited", "auto", "0", "5m", "00:05:00", "36MB", "-1", "1e400", "127.0.0.1:25", "[::1]:25",
                     "0.0.0.0/0", "10.0.0.1-10.0.0.0", "*.corp.example", "Verbose", "None", "AnonymousUsers",
                     "ExternalAuthoritative", "<I>CN=a<S>CN=b", "ldap://x", "normalize"]),
    st.dates(), st.times(), st.datetimes(),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def _paths(node, prefix=()):
    """Every (container, key) in the document, tables and arrays of tables included."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield node, k
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield node, i
            yield from _paths(v, (*prefix, i))


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=10**6), st.sampled_from(["set", "delete", "add"]), values,
                          st.text(max_size=12)), min_size=1, max_size=4))
@example([(0, "set", {"x": [1]}, "")])
@example([(5, "set", 2**70, "")])
def test_any_mutation_of_the_sample_gives_a_config_or_a_config_error(mutations):
    doc = copy.deepcopy(SAMPLE)
    for index, action, value, key in mutations:
        paths = list(_paths(doc))
        container, k = paths[index % len(paths)]
        if action == "set":
            container[k] = value
        elif action == "delete":
            del container[k]
        elif isinstance(container, dict):
            container[key] = value
        else:
            container.append(value)
    try:
        config = parse_config(doc, "fuzz.toml")
    except ConfigError as e:
        assert e.problems and all(p.file == "fuzz.toml" and p.reason for p in e.problems)
        return
    assert isinstance(config, Config)


@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.builds(lambda a, b: (a + "\n" + b).encode(), st.sampled_from(["[server]", "[[receive_connectors]]", "[limits]",
                                                                                  "x = 1", "[server]\nworkers = 'many'"]),
                           st.text(max_size=60))))
@example(b"\xff\xfe")
@example(b"[server]\nfqdn = 1979-05-27T07:32:00Z\n")
def test_any_file_gives_a_config_or_a_config_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "fuzz.toml"
    path.write_bytes(data)
    try:
        config = load_config(path)
    except ConfigError as e:
        assert e.problems
        return
    assert isinstance(config, Config)
