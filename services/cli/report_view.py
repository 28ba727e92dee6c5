"""Printing a preprocessing report for a person (`1tt estimate`, `1tt status`)."""

from __future__ import annotations

_BARS = " ▁▂▃▄▅▆▇█"


def render(report: dict) -> str:
    documents, tokens = report["documents"], report["tokens"]
    share = 100 * tokens["accepted"] / tokens["raw"] if tokens["raw"] else 0.0
    lines = [
        f"pipeline {report['pipeline_version']}, config {report['config_sha256'][:12]}, "
        f"tokenizer {report['tokenizer']}",
        f"  documents  {documents['in']:>10,} in   {documents['kept']:>10,} kept",
        f"  tokens     {tokens['raw']:>10,} raw  {tokens['accepted']:>10,} accepted ({share:.1f}%)",
    ]
    if report["removals"]:
        lines.append("  removed:")
        for removal in report["removals"]:
            label = (
                f"{removal['reason']} / {removal['detail']}"
                if removal["detail"]
                else removal["reason"]
            )
            lines.append(
                f"    {label:<36} {removal['documents']:>8,} docs {removal['tokens']:>10,} tokens"
            )
            for example in removal["examples"][:2]:
                excerpt = " ".join(example["excerpt"].split())[:90]
                lines.append(f'      e.g. {example["document"]}: "{excerpt}"')
    else:
        lines.append("  removed: nothing")
    redactions = ", ".join(f"{kind} {count}" for kind, count in report["redactions"].items())
    lines.append(f"  personal data redacted: {redactions or 'none found'}")
    languages = ", ".join(
        f"{code} {count}" for code, count in list(report["languages"].items())[:8]
    )
    lines.append(f"  languages (kept documents): {languages or '-'}")
    counts = report["quality_histogram"]["counts"]
    if sum(counts):  # the summary in a fact has no histogram; the full report has
        top = max(counts)
        bars = "".join(_BARS[round(8 * count / top)] for count in counts)
        lines.append(f"  quality scores 0 |{bars}| 1   ({sum(counts):,} documents scored)")
    if report.get("note"):
        lines.append(f"  note: {report['note']}")
    return "\n".join(lines)
