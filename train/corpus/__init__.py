"""The corpus: its schema (``schema``, with the one list of tactic tags), the validator
(``validate``) and the shortcut audit (``audit``). ``python -m train.corpus validate|audit``."""
