"""Rewrite the options table in docs/options.md from the config dataclasses (a test checks it is in sync)."""
import pathlib
import re

from pggan.config import options_markdown

START, END = "<!-- options:start -->", "<!-- options:end -->"

doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "options.md"
text = doc.read_text()
block = f"{START}\n{options_markdown()}\n{END}"
if START in text:
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda m: block, text, flags=re.S)
else:
    text = text.replace("OPTIONS_TABLE", block)
doc.write_text(text)
print(f"updated {doc}")
