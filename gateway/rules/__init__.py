"""Quality rules: rule packs (``rules/*.yaml``) read and compiled once, evaluated purely.

- ``pack``: reads a pack file, validates it (every problem names the file and the rule id) and
  compiles its rules; ``PackLibrary`` loads the packs a configuration's campaigns name.
- ``conditions``: a rule's condition compiled into a closure, and the table of every kind;
  ``kinds/``: the kinds by family (field checks, email, phone, place, consent);
  ``fields``: the lead values a condition can read by name.
- ``model``: ``RuleSet`` (a campaign's compiled rules), ``Verdict`` (what evaluation found).
- ``leadgate rules check`` (in ``gateway.cli.rules``): a dry run of packs against sample or
  recorded leads.

Evaluation does no I/O, allocates little and never raises on a validated ``Lead``.
"""
