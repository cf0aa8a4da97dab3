"""Rewrite the options table in README.md from the config dataclasses (a test checks it is in sync)."""
import pathlib
import re

from pggan.config import options_markdown

START, END = "<!-- options:start -->", "<!-- options:end -->"

readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text()
block = f"{START}\n{options_markdown()}\n{END}"
if START in text:
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda m: block, text, flags=re.S)
else:
    text = text.replace("OPTIONS_TABLE", block)
readme.write_text(text)
print(f"updated {readme}")
