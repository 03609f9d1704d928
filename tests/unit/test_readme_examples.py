"""README.md's Python blocks are exactly the regions of examples/ that CI type-checks."""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)
REGION = re.compile(r"^( *)# README \{\n(.*?)^\1# README \}", re.S | re.M)


def readme_blocks(text: str) -> Counter[str]:
    return Counter(textwrap.dedent(m[2]).strip() for m in BLOCK.finditer(text))


def example_regions() -> Counter[str]:
    found: Counter[str] = Counter()
    for path in sorted((ROOT / "examples").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        found.update(textwrap.dedent(m[2]).strip() for m in REGION.finditer(text))
    return found


def test_every_readme_block_is_a_checked_example_and_back() -> None:
    blocks = readme_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    regions = example_regions()
    assert len(blocks) >= 18
    missing = blocks - regions
    assert not missing, "README blocks not in examples/:\n\n" + "\n\n---\n".join(missing)
    stale = regions - blocks
    assert not stale, "examples/ regions not in README.md:\n\n" + "\n\n---\n".join(stale)


def test_the_extraction_sees_an_edit() -> None:
    # The check above must fail when one side changes: an edit shows as a difference.
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    edited = text.replace("rate_limit=[RateLimit(5_000, 60)", "rate_limit=[RateLimit(4_000, 60)")
    assert edited != text
    assert readme_blocks(edited) - example_regions()
