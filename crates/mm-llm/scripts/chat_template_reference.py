#!/usr/bin/env python3
"""Renders every chat template in a folder on the committed conversations with Python's
jinja2, in the environment Hugging Face's `apply_chat_template` builds: an immutable
sandbox with trim_blocks and lstrip_blocks, the loopcontrols extension, `raise_exception`,
`strftime_now`, the `generation` block tag and a `tojson` filter over `json.dumps(ensure_ascii=False, ...)`. Tools are
not passed. `strftime_now` formats one fixed instant so the output is reproducible.

Writes JSON: for each template file, for each conversation, {"text": ...} or
{"error": ...} (the exception jinja2 raised; only its presence is compared).

usage: chat_template_reference.py TEMPLATES_DIR conversations.json OUT.json
"""
import json
import os
import sys
from datetime import datetime, timezone

import jinja2
import jinja2.ext
import jinja2.sandbox

BOS, EOS = "<s>", "</s>"
FIXED_TIME = 1721952000  # 2024-07-26 00:00:00 UTC


class Generation(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`, as Hugging Face's AssistantTracker renders
    it when no assistant mask is asked for: the body, unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def environment():
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols]
    )

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def strftime_now(fmt):
        return datetime.fromtimestamp(FIXED_TIME, tz=timezone.utc).strftime(fmt)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    folder, conversations, out = sys.argv[1:4]
    cases = json.load(open(conversations, encoding="utf-8"))
    env = environment()
    result = {"bos_token": BOS, "eos_token": EOS, "fixed_time": FIXED_TIME, "renderings": {}}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".jinja"):
            continue
        source = open(os.path.join(folder, name), encoding="utf-8").read()
        per = {}
        try:
            template = env.from_string(source)
        except Exception as e:  # a template jinja2 cannot compile
            per = {c["name"]: {"error": f"{type(e).__name__}: {e}"} for c in cases}
        else:
            for c in cases:
                try:
                    text = template.render(messages=c["messages"], bos_token=BOS, eos_token=EOS,
                                           add_generation_prompt=c["add_generation_prompt"])
                    per[c["name"]] = {"text": text}
                except Exception as e:
                    per[c["name"]] = {"error": f"{type(e).__name__}: {e}"}
        result["renderings"][name] = per
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
