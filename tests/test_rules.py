"""The rules engine: loading (file/line/rule errors), safe expressions, conditions, scopes, explanations."""

from __future__ import annotations

import io
import json
import re
import unicodedata
from pathlib import Path

import polars as pl
import pytest
from helpers_frames import entra, reference
from rich.console import Console

from scimflow.commands import rules_cmd
from scimflow.rules import RuleError, compile_rules, group_directory, load_rules, parse_rules, run_rule_tests

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"

HEAD = "version: 1\nmapping: {user_name: userPrincipalName, email: 'coalesce(mail, userPrincipalName)'}\nrules:\n"


def ruleset(body: str, head: str = HEAD):
    """Parse a rule set made of the standard head and ``body`` (the rules list)."""
    return parse_rules(head + body, source="t.yaml")


def evaluate(rules_yaml: str, *users: dict) -> list[dict]:
    """Evaluate rules (a rules-list body) over users; return each row as a dict."""
    rs = ruleset(rules_yaml)
    frame = entra(*users)
    out = compile_rules(rs, frame.schema, groups=group_directory(frame)).evaluate(frame.lazy()).collect()
    return out.to_dicts()


def quiet() -> Console:
    """A console that records instead of printing."""
    return Console(record=True, width=200, file=io.StringIO())


# -- loading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [ROOT / "rules" / "default.yaml", FIXTURES / "rules.yaml"], ids=["default", "fixture"])
def test_shipped_rule_sets_load_and_pass_their_tests(path):
    """The shipped rule sets load, compile and pass their own tests block."""
    rs = load_rules(path)
    outcomes = run_rule_tests(rs)
    assert outcomes
    assert all(o.passed for o in outcomes), [o.problems for o in outcomes]


def test_default_rule_set_shows_every_feature():
    """rules/default.yaml uses every condition kind, element, scope and the disabled flag."""
    rs = load_rules(ROOT / "rules" / "default.yaml")
    kinds = {k for r in rs.rules for k, v in r.when.model_dump(by_alias=True).items() if v is not None}
    assert kinds == {"all", "in_group", "not_in_group", "expr"}
    elements = {e for r in rs.rules for e, _ in r.set_.items()}
    assert elements == {"user_plan", "role", "primary_group", "secondary_groups", "owner_company", "confidential"}
    scopes = {(e, s.scope) for r in rs.rules for e, s in r.set_.items()}
    assert {"always", "if_not_set", "add"} <= {s for _, s in scopes}
    assert ("secondary_groups", "always") in scopes
    assert any(not r.enabled for r in rs.rules)
    assert any(isinstance(r.when.in_group, list) for r in rs.rules)


BAD_FILES = [
    ("version: 2\nrules: [{name: A, when: {all: true}}]\n", 1, None, "version"),
    ("version: 1\nrules: [{name: A, when: {all: true}}]\nextra: 1\n", 3, None, "extra"),
    ("version: 1\nrules:\n  - name: A\n    whn: {all: true}\n", 4, "A", "whn"),
    (
        "version: 1\nrules:\n  - name: A\n    when: {all: true}\n    set: {role: {value: X, scope: sometimes}}\n",
        5,
        "A",
        "scope",
    ),
    (
        "version: 1\nrules:\n  - name: A\n    when: {all: true}\n    set: {role: {value: X, scope: add}}\n",
        5,
        "A",
        "scope",
    ),
    ("version: 1\nrules:\n  - name: A\n    when: {all: true}\n    set:\n      role: 5\n", 6, "A", "string"),
    ("version: 1\nrules:\n  - name: A\n    when: {all: true}\n    set: {colour: red}\n", 5, "A", "colour"),
    ("version: 1\nrules:\n  - name: A\n    when: {}\n", 4, "A", "at least one"),
    ("version: 1\nrules:\n  - {name: A, when: {all: true}}\n  - {name: A, when: {all: true}}\n", 4, "A", "unique"),
    ("version: 1\nversion: 1\nrules: []\n", 2, None, "duplicate key"),
    ("version: 1\nrules:\n  - name: A\n    when: {all: true\n", None, None, "YAML"),
    ("version: 1\nrules: []\n", 2, None, "rules"),
    ("- just a list\n", 1, None, "mapping"),
    (
        "version: 1\nmatch: [email]\nmapping: {user_name: userPrincipalName}\nrules: [{name: A, when: {all: true}}]\n",
        2,
        None,
        "email",
    ),
    ("version: 1\nmatch: [upn]\nrules: [{name: A, when: {all: true}}]\n", 2, None, "match"),
    ("version: 1\ndeprovision: delete\nrules: [{name: A, when: {all: true}}]\n", 2, None, "deprovision"),
    ("version: 1\nrules: [{name: A, when: {all: true}}]\ntests:\n  - user: {upn: x}\n    expect: {}\n", 4, None, "upn"),
    (
        "version: 1\nrules: [{name: A, when: {all: true}}]\ntests:\n  - user: {}\n    expect: {colour: red}\n",
        5,
        None,
        "colour",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "rule", "words"),
    BAD_FILES,
    ids=[
        "version",
        "unknown-top-key",
        "unknown-rule-key",
        "bad-scope",
        "add-on-scalar",
        "number-as-name",
        "unknown-element",
        "empty-when",
        "duplicate-rule-names",
        "duplicate-yaml-key",
        "yaml-syntax",
        "no-rules",
        "not-a-mapping",
        "email-match-without-mapping",
        "unknown-match-key",
        "unknown-deprovision",
        "unknown-test-attribute",
        "unknown-expectation",
    ],
)
def test_malformed_rule_files_name_file_line_and_rule(tmp_path, text, line, rule, words):
    """A malformed rule file raises RuleError naming the file, the line and (inside a rule) the rule."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RuleError) as info:
        load_rules(path)
    err = info.value
    assert err.file == str(path)
    assert str(path) in str(err)
    if line is not None:
        assert err.line == line, str(err)
        assert f":{line}:" in str(err)
    assert err.rule == rule
    if rule:
        assert f"rule '{rule}'" in str(err)
    assert words.lower() in str(err).lower()


def test_missing_file_is_a_rule_error(tmp_path):
    """A missing rule file is a RuleError naming it."""
    with pytest.raises(RuleError, match="cannot read"):
        load_rules(tmp_path / "nope.yaml")


def test_yaml_12_booleans_keep_country_codes_as_text():
    """NO, yes and on stay text; only true/false are booleans."""
    rs = parse_rules(
        "version: 1\nrules: [{name: A, when: {all: true}}]\ntests:\n"
        "  - user: {country: NO, city: yes}\n    expect: {in_scope: true}\n"
    )
    assert rs.tests[0].user == {"country": "NO", "city": "yes"}
    assert rs.tests[0].expect == {"in_scope": True}


def test_shorthands_expand():
    """A bare value is scope always; a bare list (or name) for secondary_groups is scope add."""
    rs = ruleset(
        "  - {name: A, when: {all: true}, set: {role: R, secondary_groups: [G], confidential: true}}\n"
        "  - {name: B, when: {all: true}, set: {secondary_groups: H, user_plan: {value: P}}}\n"
    )
    a, b = rs.rules
    assert (a.set_.role.value, a.set_.role.scope) == ("R", "always")
    assert (a.set_.secondary_groups.value, a.set_.secondary_groups.scope) == (["G"], "add")
    assert (a.set_.confidential.value, a.set_.confidential.scope) == (True, "always")
    assert (b.set_.secondary_groups.value, b.set_.secondary_groups.scope) == (["H"], "add")
    assert b.set_.user_plan.scope == "always"


# -- hostile and invalid expressions ---------------------------------------------------------------

HOSTILE = [
    "userPrincipalName IN (SELECT a FROM read_csv('/definitely/not/here.csv'))",
    "userPrincipalName IN (FROM read_csv('/definitely/not/here.csv'))",
    "EXISTS (SELECT 1)",
    "userPrincipalName IN (VALUES ('a'))",
    "read_parquet('/definitely/not/here.parquet') IS NULL",
    "read_json('/etc/passwd') IS NULL",
    "eval('1+1')",
    "__import__('os').system('id')",
    "os.system('id') = 0",
    "country = 'NO'; DROP TABLE users",
    "country = 'NO' -- trailing comment",
    "country = 'NO' /* block */",
    "country = $$NO$$",
    "country = 'N\\' OR x IN (SELECT 1) OR country = '",
    "\"read_csv\"('/x') IS NULL",
]

INVALID = [
    ("nosuchcolumn = 1", "unknown column 'nosuchcolumn'"),
    ('department = "Sales"', "unknown column 'Sales'"),
    ("department = 'Sales' AND", "invalid SQL"),
    ("jobTitle", "true or false"),
    ("country = 'NO' AND 'unterminated", "unterminated"),
    ("userprincipalname = 'x'", "did you mean 'userPrincipalName'"),
]


@pytest.mark.parametrize("expr", HOSTILE, ids=[f"hostile-{i}" for i in range(len(HOSTILE))])
def test_hostile_expressions_are_refused_before_parsing(tmp_path, expr, monkeypatch):
    """A hostile expr is a RuleError naming file, line and rule, and never reaches the SQL parser."""
    called = []
    real = pl.sql_expr

    def spy(sql, *args, **kwargs):
        called.append(sql)
        return real(sql, *args, **kwargs)

    monkeypatch.setattr(pl, "sql_expr", spy)
    path = tmp_path / "r.yaml"
    path.write_text(f"version: 1\nrules:\n  - name: Evil\n    when:\n      expr: {json.dumps(expr)}\n")
    with pytest.raises(RuleError) as info:
        compile_rules(load_rules(path))
    assert (info.value.file, info.value.line, info.value.rule) == (str(path), 5, "Evil")
    assert expr not in called


def test_subquery_on_a_missing_path_is_our_error_not_a_file_error(tmp_path):
    """A subquery naming a file that does not exist gives RuleError, not FileNotFoundError (no file touched)."""
    with pytest.raises(RuleError, match="Sneaky"):
        compile_rules(
            ruleset(
                "  - name: Sneaky\n    when: {expr: \"userPrincipalName IN (SELECT * FROM read_csv('/no/such.csv'))\"}\n"
            )
        )


@pytest.mark.parametrize(("expr", "words"), INVALID, ids=[w for _, w in INVALID])
def test_invalid_expressions_name_rule_and_column(expr, words):
    """Invalid SQL, unknown columns and non-boolean conditions are load-time errors naming the rule."""
    with pytest.raises(RuleError) as info:
        compile_rules(ruleset(f"  - name: Broken\n    when: {{expr: {json.dumps(expr)}}}\n"))
    assert info.value.rule == "Broken"
    assert info.value.line == 5
    assert words in str(info.value)


def test_mapping_expressions_are_checked_too():
    """An unsafe or non-text mapping expression is refused, naming the mapping field and line."""
    head = "version: 1\nmapping:\n  user_name: userPrincipalName\n  title: \"eval('x')\"\nrules:\n"
    with pytest.raises(RuleError) as info:
        compile_rules(ruleset("  - {name: A, when: {all: true}}\n", head=head))
    assert info.value.line == 4
    assert "mapping title" in str(info.value)
    head = "version: 1\nmapping:\n  user_name: userPrincipalName\n  title: accountEnabled\nrules:\n"
    with pytest.raises(RuleError, match="must be text"):
        compile_rules(ruleset("  - {name: A, when: {all: true}}\n", head=head))


@pytest.mark.parametrize(
    "expr",
    [
        "department = 'Select from values'",
        "jobTitle ILIKE '%with%'",
        "regexp_like(employeeId, '^\\d+$')",
        "lower(trim(country)) IN ('no', 'se')",
        "array_contains(groups, 'HR')",
        "coalesce(city, 'x') <> 'y'",
        "CASE WHEN country = 'NO' THEN true ELSE false END",
    ],
    ids=["keyword-in-string", "ilike", "regex", "lower-trim", "array-contains", "coalesce", "case"],
)
def test_benign_expressions_compile(expr):
    """Ordinary expressions, including query words inside strings, are accepted."""
    compile_rules(ruleset(f"  - name: Fine\n    when: {{expr: {json.dumps(expr)}}}\n"))


DOCS = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
DOC_EXPRS = [e for e in re.findall(r'expr: "((?:[^"\\]|\\.)*)"', DOCS) if e != "…"]


@pytest.mark.parametrize("expr", DOC_EXPRS, ids=[f"doc-{i}" for i in range(len(DOC_EXPRS))])
def test_every_expression_in_the_docs_compiles(expr):
    """Each `expr:` example in docs/rules.md passes the guard and compiles."""
    compile_rules(ruleset(f"  - name: Doc\n    when: {{expr: {json.dumps(expr)}}}\n"))


def test_docs_have_expression_examples():
    """The docs' examples are found (so the test above covers something)."""
    assert len(DOC_EXPRS) >= 8


@pytest.mark.parametrize(
    "expr",
    [
        "replace(lower(userPrincipalName), '@old.example', '@new.example.com') = 'a@new.example.com'",
        "lpad(employeeId, 8, '0') = '00000042'",
        "country ~ '^N' OR country RLIKE '^S' OR country REGEXP '^D'",
        "regexp_like(mail, '@contoso\\.(no|se)$', 'i')",
        "country !~* '^x' AND employeeId::int > 10",
        "coalesce(array_get(businessPhones, 1), mobilePhone) IS NOT NULL",
        "length(jobTitle) BETWEEN 1 AND 2.5e2",
    ],
    ids=["replace-domain", "lpad", "regex-operators", "regex-flags", "not-regex-cast", "array-get", "numbers"],
)
def test_bounded_forms_compile_and_evaluate(expr):
    """Regex operators, a bounded replace and lpad, casts and number literals are accepted and evaluate."""
    rows = evaluate(
        f"  - name: Fine\n    when: {{expr: {json.dumps(expr)}}}\n",
        {"id": "u1", "userPrincipalName": "a@old.example", "country": "NO", "employeeId": "42", "mail": "a@CONTOSO.no"},
    )
    assert len(rows) == 1


REFUSED = [
    ("a" * 16_385, "the limit is 16,384"),
    (" OR ".join(["accountEnabled"] * 300), "more than 500 parts"),
    ("(" * 25 + "accountEnabled" + ")" * 25, "nested more than 24 deep"),
    ("x" * 65 + " IS NULL", "the limit is 64"),
    ("log2.abs(8) > 1", "dotted names"),
    ('"os" . "system"(\'id\') = 0', "dotted names"),
    (
        "replace(" * 6 + "mail" + ", 'a', 'aa')" * 6 + " = ''",
        "32 times longer",
    ),
    (" || ".join(["mail"] * 33) + " = ''", "33 pieces joined"),
    ("concat_ws('.', " + ", ".join(["mail"] * 18) + ") = ''", "32 times longer"),
    (
        "concat(replace(mail, 'a', 'aaaa'), " + ", ".join(["mail"] * 8) + ") = ''",
        "32 times longer",
    ),
    ("replace(mail, '', 'x') = ''", "must not be empty"),
    ("replace(mail, department, 'x') = ''", "'from' must be one quoted text"),
    ("rpad(mail, 257) = ''", "up to 256"),
    ("regexp_replace(mail, 'a', 'b') = ''", "function 'regexp_replace' is not allowed"),
    ("regexp_like(mail, '(')", "invalid regular expression"),
    ("regexp_like(mail, '\\w{100}')", "too big"),
    ("regexp_like(mail, 'a{5000}')", "counted repetition of 5,000"),
    ("regexp_like(mail, '(?=a)')", "look-ahead"),
    ("regexp_like(mail, '\\Z')", "for Polars"),
    ("regexp_like(mail, 'a', 'q')", "flags"),
    ("regexp_like(mail, department)", "pattern must be one quoted text"),
    ("mail ~ 'a' || '('", "followed by one quoted regular expression"),
    ("mail RLIKE department", "followed by one quoted regular expression"),
    ("mail = 'a' 'b'", "two texts in a row"),
    ("mail = X'41'", "prefixed"),
    ("mail = ?", "placeholders"),
    ("mail = :m", "placeholders"),
    ("1e5abc = 1", "directly after a number"),
]


@pytest.mark.parametrize(("expr", "words"), REFUSED, ids=[w for _, w in REFUSED])
def test_unbounded_or_unsafe_expressions_are_load_errors(expr, words):
    """Oversized, deep, dotted, growing and bad-regex expressions are refused at load, naming rule and line."""
    with pytest.raises(RuleError) as info:
        ruleset(f"  - name: Bad\n    when:\n      expr: {json.dumps(expr)}\n")
    assert (info.value.rule, info.value.line) == ("Bad", 6)
    assert words in str(info.value)


SEPARATORS = sorted(
    {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in {"Zs", "Zl", "Zp", "Cc", "Cf"}}
    - {" ", "\t", "\n", "\r"}
)


def test_no_separator_code_point_can_hide_a_subquery_or_a_call():
    """Every Unicode space, separator, control and format character outside quotes is refused."""
    assert len(SEPARATORS) > 150
    for sep in SEPARATORS:
        for expr in (f"mail{sep}IN{sep}(SELECT{sep}1)", f"read_csv{sep}('/etc/passwd') IS NULL", f"a{sep}.b = 1"):
            with pytest.raises(RuleError, match=r"not allowed|unterminated|YAML|should match pattern") as info:
                ruleset(f"  - name: Sep\n    when: {{expr: {json.dumps(expr)}}}\n")
            assert info.value.line == 5 or "YAML" in str(info.value), (hex(ord(sep)), str(info.value))


def test_yaml_anchors_aliases_and_bombs_are_refused_with_the_line():
    """Anchors, aliases (a bomb, a self-reference) are refused before anything is built, naming the line."""
    with pytest.raises(RuleError, match=r"t\.yaml:5: anchors \(&s\)"):
        ruleset("  - name: A\n    when: &s {all: true}\n  - name: B\n    when: *s\n")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n" for p, k in zip("abcdefgh", "bcdefghi", strict=True)
    )
    with pytest.raises(RuleError, match=r"t\.yaml:1: anchors"):
        parse_rules(bomb + HEAD + "  - {name: A, when: {all: true}}\n", source="t.yaml")
    with pytest.raises(RuleError, match=r"t\.yaml:2: anchors \(&loop\)"):
        parse_rules("version: 1\nrules: &loop [{name: A, when: {all: true}}, *loop]\n", source="t.yaml")


# -- conditions --------------------------------------------------------------------------------------

USERS = [
    {"id": "u1", "userPrincipalName": "a@x", "groups": ["Sales", "Staff"], "country": "NO", "jobTitle": "Manager"},
    {"id": "u2", "userPrincipalName": "b@x", "groups": ["Staff"], "country": "SE", "jobTitle": None},
    {"id": "u3", "userPrincipalName": "c@x", "groups": [], "country": None},
    {"id": "u4", "userPrincipalName": "d@x", "groups": ["Sales"], "accountEnabled": False},
]


@pytest.mark.parametrize(
    ("when", "fired"),
    [
        ("{all: true}", ["u1", "u2", "u3"]),
        ("{all: false}", []),
        ("{in_group: Sales}", ["u1"]),
        ("{in_group: gid-Staff}", ["u1", "u2"]),
        ("{in_group: [Sales, Staff]}", ["u1", "u2"]),
        ("{not_in_group: Sales}", ["u2", "u3"]),
        ("{not_in_group: [Sales, gid-Staff]}", ["u3"]),
        ("{expr: \"country = 'NO'\"}", ["u1"]),
        ("{expr: \"jobTitle <> 'Manager'\"}", []),
        ('{expr: "country IS NULL"}', ["u3"]),
        ("{in_group: Staff, expr: \"country = 'SE'\"}", ["u2"]),
    ],
    ids=[
        "all",
        "all-false",
        "in-group-name",
        "in-group-id",
        "in-group-any",
        "not-in-group",
        "not-in-group-none",
        "expr",
        "expr-null-is-false",
        "expr-is-null",
        "and",
    ],
)
def test_condition_kinds(when, fired):
    """Each condition kind selects exactly its users; disabled users never fire; NULL counts as false."""
    rows = evaluate(f"  - {{name: R, when: {when}}}\n", *USERS)
    assert [r["id"] for r in rows if r["rules"]] == fired
    assert [r["id"] for r in rows if r["in_scope"]] == fired


def test_ambiguous_group_name_is_a_load_time_error_but_its_id_works():
    """A display name two groups share is an error naming the rule; the id is accepted."""
    users = [
        {"id": "u1", "userPrincipalName": "a@x", "groups": ["Sales"], "group_ids": ["g1"]},
        {"id": "u2", "userPrincipalName": "b@x", "groups": ["Sales"], "group_ids": ["g2"]},
    ]
    frame = entra(*users)
    rs = ruleset("  - name: Sellers\n    when: {in_group: Sales}\n")
    with pytest.raises(RuleError) as info:
        compile_rules(rs, frame.schema, groups=group_directory(frame))
    assert info.value.rule == "Sellers"
    assert info.value.line == 5
    assert "ambiguous" in str(info.value)
    assert "g1" in str(info.value)
    assert "g2" in str(info.value)
    rows = evaluate("  - name: Sellers\n    when: {in_group: g2}\n", *users)
    assert [r["id"] for r in rows if r["in_scope"]] == ["u2"]


# -- scopes and explanations -------------------------------------------------------------------------

SCOPES = [
    (
        "  - {name: A, when: {all: true}, set: {role: X}}\n  - {name: B, when: {all: true}, set: {role: Y}}\n",
        "role",
        "Y",
        "B",
    ),
    (
        "  - {name: A, when: {all: true}, set: {role: X}}\n"
        "  - {name: B, when: {all: true}, set: {role: {value: Y, scope: if_not_set}}}\n",
        "role",
        "X",
        "A",
    ),
    (
        "  - {name: A, when: {all: false}, set: {role: X}}\n"
        "  - {name: B, when: {all: true}, set: {role: {value: Y, scope: if_not_set}}}\n",
        "role",
        "Y",
        "B",
    ),
    (
        "  - {name: A, when: {all: true}, set: {role: {value: X, scope: if_not_set}}}\n"
        "  - {name: B, when: {all: true}, set: {role: {value: Y, scope: if_not_set}}}\n",
        "role",
        "X",
        "A",
    ),
    (
        "  - {name: A, when: {all: true}, set: {secondary_groups: [G2, G1]}}\n"
        "  - {name: B, when: {all: true}, set: {secondary_groups: [G3, G1]}}\n",
        "secondary_groups",
        ["G1", "G2", "G3"],
        ["A", "B"],
    ),
    (
        "  - {name: A, when: {all: true}, set: {secondary_groups: [G1]}}\n"
        "  - {name: B, when: {all: true}, set: {secondary_groups: {value: [G2], scope: always}}}\n"
        "  - {name: C, when: {all: true}, set: {secondary_groups: [G3]}}\n",
        "secondary_groups",
        ["G2", "G3"],
        ["B", "C"],
    ),
    (
        "  - {name: A, when: {all: true}, set: {secondary_groups: [G1]}}\n"
        "  - {name: B, when: {all: true}, set: {secondary_groups: {value: [G2], scope: if_not_set}}}\n",
        "secondary_groups",
        ["G1"],
        ["A"],
    ),
    (
        "  - {name: A, when: {all: true}, set: {confidential: true}}\n"
        "  - {name: B, when: {all: true}, set: {confidential: {value: false, scope: if_not_set}}}\n",
        "confidential",
        True,
        "A",
    ),
    (
        "  - {name: A, when: {all: true}, set: {role: X}}\n"
        "  - {name: B, when: {all: true}, enabled: false, set: {role: Y}}\n",
        "role",
        "X",
        "A",
    ),
]


@pytest.mark.parametrize(
    ("body", "element", "value", "by"),
    SCOPES,
    ids=[
        "always-overwrites",
        "if-not-set-after-set",
        "if-not-set-after-nonfiring",
        "if-not-set-first-wins",
        "add-unions-sorted",
        "always-replaces-list",
        "if-not-set-list",
        "flag-if-not-set",
        "disabled-skipped",
    ],
)
def test_scopes_and_which_rule_set_the_final_value(body, element, value, by):
    """always / if_not_set / add combine in file order; by_<element> names the rule(s) behind the value."""
    (row,) = evaluate(body, {"id": "u1", "userPrincipalName": "a@x"})
    assert row[f"el_{element}"] == value
    assert row[f"set_{element}"] is True
    assert row[f"by_{element}"] == by
    explain = json.loads(row["explain"])
    assert explain["set_by"][element] == by
    assert explain["rules"] == row["rules"]


def test_elements_no_rule_sets_are_not_set():
    """An element no firing rule sets is null and not set (left alone by the planner)."""
    (row,) = evaluate(
        "  - {name: A, when: {all: true}, set: {role: X}}\n  - {name: B, when: {all: false}, set: {user_plan: P}}\n",
        {"id": "u1", "userPrincipalName": "a@x"},
    )
    assert (row["set_user_plan"], row["el_user_plan"], row["by_user_plan"]) == (False, None, None)
    assert row["rules"] == ["A"]


def test_mapping_is_evaluated_for_every_user():
    """Mapped fields are Polars SQL expressions over Graph attributes."""
    rows = evaluate(
        "  - {name: A, when: {all: true}}\n",
        {"id": "u1", "userPrincipalName": "A@x", "mail": None},
        {"id": "u2", "userPrincipalName": "b@x", "mail": "m@x"},
    )
    assert [r["map_email"] for r in rows] == ["A@x", "m@x"]
    assert [r["map_user_name"] for r in rows] == ["A@x", "b@x"]


def test_many_rules_use_several_masks():
    """More than 62 rules still evaluate correctly (the fired-combination mask spans columns)."""
    body = "".join(
        f"  - {{name: R{i}, when: {{in_group: G{i % 70}}}, set: {{secondary_groups: [S{i}]}}}}\n" for i in range(70)
    )
    (row,) = evaluate(body, {"id": "u1", "userPrincipalName": "a@x", "groups": ["G3", "G65"]})
    assert row["rules"] == ["R3", "R65"]
    assert row["el_secondary_groups"] == ["S3", "S65"]


def test_unknown_reference_names_only_for_final_values():
    """Only the final value of each element is checked against the tenant's lists."""
    rs = ruleset(
        "  - {name: A, when: {all: true}, set: {role: Nope}}\n  - {name: B, when: {all: true}, set: {role: User}}\n"
        "  - {name: C, when: {all: true}, set: {secondary_groups: [Ghost]}}\n"
    )
    frame = entra({"id": "u1", "userPrincipalName": "a@x"})
    (row,) = compile_rules(rs).evaluate(frame.lazy(), ref=reference()).collect().to_dicts()
    assert "Nope" not in row["unknown"]
    assert "rule 'C'" in row["unknown"]
    assert "Ghost" in row["unknown"]


# -- commands ------------------------------------------------------------------------------------------


def test_rules_test_command_reports_failures(tmp_path):
    """`rules test` returns 1 and names the failing expectation when a test fails, 0 when all pass."""
    path = tmp_path / "r.yaml"
    path.write_text(
        "version: 1\nrules: [{name: A, when: {all: true}, set: {role: X}}]\n"
        "tests:\n  - user: {userPrincipalName: a@x}\n    expect: {role: Y}\n"
    )
    console = quiet()
    assert rules_cmd.test(path, console=console) == 1
    assert "role: expected 'Y', got 'X'" in console.export_text()
    assert rules_cmd.test(ROOT / "rules" / "default.yaml", console=quiet()) == 0


def test_rules_check_command(tmp_path, superoffice_fixture):
    """`rules check` passes a good file, and fails on unknown names given the reference or on errors."""
    from scimflow.frames import Reference

    ref = Reference.from_fixture(superoffice_fixture)
    assert rules_cmd.check(FIXTURES / "rules.yaml", ref, console=quiet()) == 0
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nrules:\n  - name: A\n    when: {all: true}\n    set: {role: Wizard}\n")
    console = quiet()
    assert rules_cmd.check(path, ref, console=console) == 1
    text = console.export_text()
    assert "Wizard" in text
    assert ":5:" in text
    path.write_text("version: 1\nrules: [{name: A, when: {expr: 'nope = 1'}}]\n")
    assert rules_cmd.check(path, None, console=quiet()) == 1


def test_committed_json_schema_is_current():
    """rules/schema.json is exactly what the models generate (regenerate with python -m scimflow.rules.schema)."""
    from scimflow.rules.schema import rule_schema_text

    committed = (Path(__file__).resolve().parents[1] / "rules" / "schema.json").read_text()
    assert committed == rule_schema_text()


def test_json_schema_accepts_the_default_rules_and_rejects_unknown_keys():
    """The schema describes the language: the default rule set fits it, and unknown keys are not allowed."""
    import yaml

    from scimflow.rules.schema import rule_schema

    schema = rule_schema()
    assert schema["additionalProperties"] is False
    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "rules" / "default.yaml").read_text())
    assert set(data) <= set(schema["properties"])
    assert {"version", "rules"} <= set(schema["properties"])
