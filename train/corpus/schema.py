"""The corpus schema: fields, allowed values, and the one list of tactic tags.

``../shared/TAXONOMY.md`` defines the labels and the tags; everything in the code that needs
the tag list (validation, counts, the keyword baseline's categories) reads it from here.
"""

from __future__ import annotations

#: The taxonomy's tactic tags, in its order.
TACTIC_TAGS = ("flattery", "paid_analysis", "travel_offer", "off_platform", "secrecy", "vague_identity",
               "access_probe", "info_request", "financial_lure", "relationship_building")
LABELS = ("benign", "grooming")
#: Every field of a corpus row and its type.
FIELDS = {"id": str, "text": str, "label": str, "tactics": list, "family": str, "hard": bool, "stage": str,
          "source": str, "author": str, "split": str}
STAGES = ("first_contact", "follow_up")
SOURCES = ("authored", "generated")
SPLITS = ("train", "validation", "test", "test_authors")
#: Splits that are evaluation only: never trained on, never used to pick a threshold.
HELD_OUT_SPLITS = ("test", "test_authors")
