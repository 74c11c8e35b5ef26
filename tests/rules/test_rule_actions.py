"""The ``actions:`` key of native rules: parsed into RuleMeta.actions, bad entries rejected at file:line:column."""

from __future__ import annotations

import textwrap

from sentinel_edge.rules.loader import load_rule_texts
from sentinel_edge.rules.model import ACTION_KINDS, ActionSpec


def load(text: str) -> tuple[list[str], dict[str, tuple[ActionSpec, ...]]]:
    rs = load_rule_texts([("r.yaml", textwrap.dedent(text).lstrip("\n"))])
    return [str(e) for e in rs.errors], {r.meta.id: r.meta.actions for r in rs.rules}


HEAD = """
- rule: {id}
  title: t
  severity: high
  condition: {cond}
"""


def rule(rid: str, cond: str, actions: str) -> str:
    return HEAD.format(id=rid, cond=cond).lstrip("\n") + textwrap.indent(textwrap.dedent(actions).strip("\n"), "  ") \
        + "\n"


def test_action_kinds_are_the_documented_four() -> None:
    assert ACTION_KINDS == ("kill", "kill_group", "block_address", "quarantine")


def test_every_form_parsed_with_its_location() -> None:
    text = rule("a.net", "event.kind = net", """
        actions:
          - kill
          - action: kill_group
          - action: block_address
            ttl: 10m
        """) + rule("b.file", "event.kind = file or event.kind = exec", """
        actions: [quarantine, {action: block_address}]
        """)
    # block_address on a rule without net events is an error (checked below); here b.file has only quarantine
    text = text.replace("actions: [quarantine, {action: block_address}]", "actions: [quarantine]")
    errs, acts = load(text)
    assert errs == []
    assert acts == {
        "a.net": (
            ActionSpec("kill", None, "r.yaml", 6, 7),
            ActionSpec("kill_group", None, "r.yaml", 7, 15),
            ActionSpec("block_address", 600.0, "r.yaml", 8, 15),
        ),
        "b.file": (ActionSpec("quarantine", None, "r.yaml", 14, 13),),
    }


def test_no_actions_key_gives_empty_tuple() -> None:
    errs, acts = load(HEAD.format(id="c.none", cond="event.kind = exec"))
    assert errs == []
    assert acts == {"c.none": ()}


def test_ttl_units_and_sequence_rule() -> None:
    text = """
    - rule: d.seq
      type: sequence
      title: download then connect
      severity: high
      by: proc.pid
      within: 1m
      steps:
        - name: w
          condition: event.kind = file
        - name: c
          condition: event.kind = net
      actions:
        - quarantine
        - action: block_address
          ttl: 1500ms
        - kill
    """
    errs, acts = load(text)
    assert errs == []
    assert acts == {"d.seq": (
        ActionSpec("quarantine", None, "r.yaml", 13, 7),
        ActionSpec("block_address", 1.5, "r.yaml", 14, 15),
        ActionSpec("kill", None, "r.yaml", 16, 7),
    )}


def test_bad_actions_rejected_each_located() -> None:
    text = rule("e.bad", "event.kind = net", """
        actions:
          - kil
          - action: kill_group
            ttl: 5s
          - kill
          - kill
          - [x]
          - action: block_address
            ttl: soon
          - ttl: 5s
          - action: ""
          - action:
        """) + rule("f.notlist", "event.kind = net", """
        actions: kill
        """) + rule("g.kinds", "event.kind = exec", """
        actions: [block_address, kill]
        """) + rule("h.kinds", "event.kind = net", """
        actions: [quarantine]
        """) + rule("k.extra", "event.kind = net", """
        actions:
          - action: block_address
            ttl: 2s
            extra: 1
        """)
    errs, acts = load(text)
    assert errs == [
        "r.yaml:6:7: rule 'e.bad': unknown action 'kil' (did you mean 'kill'?) "
        "(one of kill, kill_group, block_address, quarantine)",
        "r.yaml:8:12: rule 'e.bad': action 'kill_group' takes no ttl (only block_address does)",
        "r.yaml:10:7: rule 'e.bad': action 'kill' is named twice (first at r.yaml:9:7)",
        "r.yaml:11:7: an action of rule 'e.bad' must be an action name or a mapping (action: NAME), not a list",
        "r.yaml:13:12: rule 'e.bad': ttl 'soon' of action 'block_address' is not a duration of at least 1s "
        "(a number with ms, s, m or h: 10m)",
        "r.yaml:14:7: an action of rule 'e.bad' has no 'action'",
        "r.yaml:15:15: an action of rule 'e.bad' is empty",
        "r.yaml:16:14: an action of rule 'e.bad' is empty",
        "r.yaml:21:12: actions of rule 'f.notlist' must be a list, not a single value",
        "r.yaml:26:13: rule 'g.kinds': action 'block_address' needs net events, but the rule only matches exec events",
        "r.yaml:31:13: rule 'h.kinds': action 'quarantine' needs exec or file events, "
        "but the rule only matches net events",
        "r.yaml:39:7: an action of rule 'k.extra' has unknown key 'extra' (allowed: action, ttl)",
    ]
    # a rule with a bad action is not loaded (like any other error in it)
    assert acts == {}


def test_ttl_below_one_second_rejected() -> None:
    errs, _ = load(rule("i.ttl", "event.kind = net", """
        actions:
          - action: block_address
            ttl: 999ms
        """))
    assert errs == ["r.yaml:7:12: rule 'i.ttl': ttl '999ms' of action 'block_address' is not a duration of at "
                    "least 1s (a number with ms, s, m or h: 10m)"]


def test_rule_matching_any_kind_may_name_every_action() -> None:
    errs, acts = load(rule("j.any", "proc.name = evil", """
        actions: [kill, kill_group, block_address, quarantine]
        """))
    assert errs == []
    assert [a.kind for a in acts["j.any"]] == list(ACTION_KINDS)
