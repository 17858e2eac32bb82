#!/usr/bin/env python3
"""Rebuild tests/corpus/sisimai/ and tests/corpus/manifest-sisimai.toml.

Usage:
    python tests/corpus/tools/import_sisimai.py SET_OF_EMAILS RB_SISIMAI [--commit REV]

SET_OF_EMAILS  sisimai's public set-of-emails: either a checkout (a directory
               holding LICENSE and maildir/bsd/*.eml) or a git directory (bare
               mirror), read at HEAD.
RB_SISIMAI     a git directory of sisimai/rb-sisimai; its test/public/*.rb
               files are read at --commit (default HEAD).

The expected values come only from rb-sisimai's own test expectations
(``IsExpected`` in test/public/{lhost-*,rhost-*,arf,rfc3464,rfc3834}.rb),
never from running a classifier.  sisimai's harness (test/public/lhost-code.rb)
reads the expectation keyed 'NN' of module M against
set-of-emails/maildir/bsd/<prefix>M-NN.eml, where prefix is "lhost-" or
"rhost-" (nothing for arf, rfc3464 and rfc3834).  Because set-of-emails moves
on independently of rb-sisimai, a message is matched to an expectation by
content: its git blob id must equal that of the file rb-sisimai's own copy of
set-of-emails holds at the same commit.  This follows renames and refuses
messages whose content changed since the expectation was written.

Only the standard library is used.  Message files are copied byte for byte.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent.parent  # tests/corpus
OUT_SUBDIR = "sisimai"
MANIFEST = "manifest-sisimai.toml"
SOURCE = "sisimai"

# sisimai REASON -> (kind, bounce_class, reason).  A kind of None means bounce.
VAGUE_CLASS = ["soft", "hard"]
REASON_MAP: dict[str, tuple] = {
    "vacation": (["auto_reply", "out_of_office"], None, None),
    "feedback": ("complaint", None, None),
    "delivered": ("receipt", None, None),
    "userunknown": ("bounce", "hard", "user_unknown"),
    "hasmoved": ("bounce", "hard", "user_unknown"),
    "hostunknown": ("bounce", "hard", "host_unknown"),
    "notaccept": ("bounce", "hard", "host_unknown"),
    # sisimai names "filtered" by the SMTP phase (refused after DATA), often "user unknown".
    "filtered": ("bounce", "hard", ["rejected_by_recipient", "user_unknown"]),
    "norelaying": ("bounce", "hard", "rejected_by_recipient"),
    "mailboxfull": ("bounce", "soft", "mailbox_full"),
    "suspend": ("bounce", "soft", "mailbox_disabled"),
    # A report that gave up quotes its last attempt's error (a timeout), and the reverse.
    "expired": ("bounce", "soft", ["expired", "network_error"]),
    "exceedlimit": ("bounce", "soft", "message_too_big"),
    "mesgtoobig": ("bounce", "soft", "message_too_big"),
    "toomanyconn": ("bounce", "soft", "rate_limited"),
    "speeding": ("bounce", "soft", "rate_limited"),
    "ratelimited": ("bounce", "soft", "rate_limited"),
    "networkerror": ("bounce", "soft", ["network_error", "expired"]),
    "rejected": ("bounce", "policy", "sender_rejected"),
    # sisimai's blocked/spam/policy split is by wording; ours is too, differently.
    "blocked": ("bounce", "policy", ["spam_blocked", "policy_rejected"]),
    "spamdetected": ("bounce", "policy", ["spam_blocked", "policy_rejected"]),
    "virusdetected": ("bounce", "policy", "spam_blocked"),
    "badreputation": ("bounce", "policy", ["spam_blocked", "policy_rejected"]),
    "securityerror": ("bounce", "policy", "auth_failed"),
    "authfailure": ("bounce", "policy", "auth_failed"),
    "policyviolation": ("bounce", "policy", ["policy_rejected", "spam_blocked"]),
    "requireptr": ("bounce", "policy", "policy_rejected"),
    "notcompliantrfc": ("bounce", "policy", "policy_rejected"),
}
# Named as vague on purpose: bounce, class soft-or-hard, no reason.
VAGUE_REASONS = {
    "systemerror",
    "systemfull",
    "mailererror",
    "contenterror",
    "syntaxerror",
    "undefined",
    "onhold",
    "emptyaddress",
}


def map_reason(reason: str, unmapped: set[str]) -> tuple:
    if reason in REASON_MAP:
        return REASON_MAP[reason]
    if reason not in VAGUE_REASONS:
        unmapped.add(reason)
    return ("bounce", VAGUE_CLASS, None)


# --------------------------------------------------------------------------
# git helpers (read-only)


def git(gitdir: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(gitdir), *args],
        check=True,
        capture_output=True,
    ).stdout


def git_text(gitdir: Path, rev: str, path: str) -> str:
    return git(gitdir, "show", f"{rev}:{path}").decode("utf-8")


def ls_tree(gitdir: Path, rev: str, path: str) -> dict[str, str]:
    """name -> blob id for the files directly under path."""
    out = git(gitdir, "ls-tree", "-z", rev, path.rstrip("/") + "/")
    result = {}
    for rec in out.split(b"\0"):
        if not rec:
            continue
        meta, name = rec.decode().split("\t", 1)
        _mode, typ, oid = meta.split()
        if typ == "blob":
            result[name.rsplit("/", 1)[-1]] = oid
    return result


def resolve_gitdir(p: Path) -> Path:
    for cand in (p, p / "repo", p / ".git"):
        if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    raise SystemExit(f"{p}: not a git directory")


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# --------------------------------------------------------------------------
# message source: a checkout or a git directory


class Messages:
    def __init__(self, path: Path):
        self.path = path
        if (path / "maildir" / "bsd").is_dir():
            self.gitdir = None
            self.files = {p.name: p for p in sorted((path / "maildir" / "bsd").glob("*.eml"))}
            self.blobs = {n: blob_id(p.read_bytes()) for n, p in self.files.items()}
            self.describe = f"{path} (checkout)"
        else:
            self.gitdir = resolve_gitdir(path)
            self.rev = git(self.gitdir, "rev-parse", "HEAD").decode().strip()
            self.blobs = {
                n: o
                for n, o in ls_tree(self.gitdir, self.rev, "maildir/bsd").items()
                if n.endswith(".eml")
            }
            self.describe = f"{self.gitdir} at {self.rev}"
        self.by_blob: dict[str, list[str]] = {}
        for n, o in sorted(self.blobs.items()):
            self.by_blob.setdefault(o, []).append(n)

    def read(self, name: str) -> bytes:
        if self.gitdir is None:
            return self.files[name].read_bytes()
        return git(self.gitdir, "cat-file", "blob", self.blobs[name])

    def license(self) -> bytes:
        if self.gitdir is None:
            return (self.path / "LICENSE").read_bytes()
        return git(self.gitdir, "show", f"{self.rev}:LICENSE")


# --------------------------------------------------------------------------
# Ruby IsExpected parsing


def strip_ruby_comments(src: str) -> str:
    out, i, q = [], 0, None
    while i < len(src):
        c = src[i]
        if q:
            out.append(c)
            if c == "\\" and i + 1 < len(src):
                out.append(src[i + 1])
                i += 1
            elif c == q:
                q = None
        elif c in "'\"":
            q = c
            out.append(c)
        elif c == "#":
            while i < len(src) and src[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def parse_is_expected(src: str, where: str) -> dict[str, list[list]]:
    src = strip_ruby_comments(src)
    m = re.search(r"IsExpected\s*=\s*\{", src)
    if not m:
        raise ValueError(f"{where}: no IsExpected")
    depth, i = 0, m.end() - 1
    for j in range(i, len(src)):
        if src[j] == "{":
            depth += 1
        elif src[j] == "}":
            depth -= 1
            if depth == 0:
                body = src[i : j + 1]
                break
    else:
        raise ValueError(f"{where}: unbalanced IsExpected")
    body = body.replace("=>", ":")
    body = re.sub(r"\btrue\b", "True", body)
    body = re.sub(r"\bfalse\b", "False", body)
    body = re.sub(r"\bnil\b", "None", body)
    data = ast.literal_eval(body)
    for k, v in data.items():
        if not (
            isinstance(k, str)
            and k.isdigit()
            and isinstance(v, list)
            and v
            and all(isinstance(r, list) and len(r) >= 4 for r in v)
        ):
            raise ValueError(f"{where}: odd entry {k!r}: {v!r}")
    return data


def parse_public_skips(src: str) -> set[str]:
    m = re.search(r"'public'\s*=>\s*%w\[([^\]]*)\]", src)
    if not m:
        raise ValueError("test/public/lhost-code.rb: no skiptonext['public']")
    return set(m.group(1).split())


# --------------------------------------------------------------------------


@dataclass
class Entry:
    origin_module: str  # e.g. lhost-postfix
    index: str  # the key as written, e.g. '02'
    rows: list
    src_name: str = ""  # file name in set-of-emails
    also: list = field(default_factory=list)  # other origins with the same bytes
    fields: dict = field(default_factory=dict)


def toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or ord(ch) > 0x7E:
            out.append("\\u%04X" % ord(ch) if ord(ch) <= 0xFFFF else "\\U%08X" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_val(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_val(x) for x in v) + "]"
    raise TypeError(v)


def expectation_files(names: list[str]) -> list[tuple[str, str]]:
    """(path, file-name prefix) for the rb files whose IsExpected we use."""
    res = []
    for n in sorted(names):
        base = n.rsplit("/", 1)[-1]
        if not base.endswith(".rb") or base.endswith("-test.rb") or base.endswith("-code.rb"):
            continue
        stem = base[:-3]
        if stem.startswith(("lhost-", "rhost-")) or stem in ("arf", "rfc3464", "rfc3834"):
            res.append((n, stem))
    return res


def build(entry: Entry, unmapped: set[str]) -> dict:
    rows = entry.rows
    reasons = [r[2] for r in rows]
    mapped = [map_reason(r, unmapped) for r in reasons]
    kind, klass, reason = mapped[0]
    if reasons[0] == "feedback" and len(rows[0]) > 4 and rows[0][4] == "opt-out":
        # RFC 5965 feedback type opt-out: the recipient asked to unsubscribe (Apple Mail
        # and Gmail send one from their unsubscribe button); either reading suppresses.
        kind = ["complaint", "unsubscribe"]
    f: dict = {
        "file": f"{OUT_SUBDIR}/{entry.src_name}",
        "source": SOURCE,
        "origin": f"{entry.origin_module} {entry.index}",
        "kind": kind,
    }
    if kind == "bounce":
        classes: list[str] = []
        for _k, c, _r in mapped:
            for x in [c] if isinstance(c, str) else (c or []):
                if x not in classes:
                    classes.append(x)
        f["bounce_class"] = classes[0] if len(classes) == 1 else classes
        if reason is not None:
            f["reason"] = reason
    if kind not in ("complaint",) and not isinstance(kind, list):
        f["recipient_count"] = len(rows)
    if rows[0][0]:
        f["status"] = rows[0][0]
    f["sisimai_reasons"] = reasons
    kinds = {str(k) for k, _c, _r in mapped}
    if len(kinds) > 1:
        f["_note"] = "recipients differ in kind: " + ", ".join(sorted(set(reasons)))
    return f


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set_of_emails", type=Path)
    ap.add_argument("rb_sisimai", type=Path)
    ap.add_argument("--commit", default="HEAD", help="rb-sisimai revision (default HEAD)")
    ap.add_argument("--out", type=Path, default=CORPUS_DIR, help="tests/corpus directory")
    a = ap.parse_args(argv)

    msgs = Messages(a.set_of_emails)
    rb = resolve_gitdir(a.rb_sisimai)
    commit = git(rb, "rev-parse", a.commit + "^{commit}").decode().strip()
    rb_blobs = ls_tree(rb, commit, "set-of-emails/maildir/bsd")
    public_skips = parse_public_skips(git_text(rb, commit, "test/public/lhost-code.rb"))
    rb_tests = [n for n in ls_tree(rb, commit, "test/public")]
    rb_tests = [f"test/public/{n}" for n in rb_tests]

    entries: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    claimed: dict[str, Entry] = {}  # blob id -> entry
    dupes: list[tuple[str, str]] = []
    unmapped: set[str] = set()
    for path, prefix in expectation_files(rb_tests):
        data = parse_is_expected(git_text(rb, commit, path), path)
        for key in sorted(data, key=int):
            name = "%s-%02d.eml" % (prefix, int(key))
            label = f"{prefix} {key}"
            if name[:-4] in public_skips:
                skipped.append(
                    (
                        label,
                        "in sisimai's skiptonext['public'] list: the harness "
                        "does not hold sisimai to this expectation",
                    )
                )
                continue
            oid = rb_blobs.get(name)
            if oid is None:
                skipped.append((label, f"{name} not in rb-sisimai's own set-of-emails"))
                continue
            cands = msgs.by_blob.get(oid, [])
            if not cands:
                why = (
                    "content differs from the file rb-sisimai tested"
                    if name in msgs.blobs
                    else "message no longer in set-of-emails"
                )
                skipped.append((label, f"{name}: {why}"))
                continue
            if oid in claimed:
                # The same bytes under another name (sisimai keeps some messages both
                # as an lhost-* and an rhost-* sample).  Keep one copy.
                first = claimed[oid]
                if [r[:3] for r in first.rows] == [r[:3] for r in data[key]]:
                    first.also.append(label)
                    dupes.append((label, f"{first.origin_module} {first.index}"))
                else:
                    skipped.append(
                        (
                            label,
                            f"same bytes as {first.origin_module} {first.index}, "
                            "whose expectation differs",
                        )
                    )
                continue
            src_name = name if name in cands else cands[0]
            claimed[oid] = Entry(prefix, key, data[key], src_name)
            entries.append(claimed[oid])

    # Messages in set-of-emails that no expectation covers.
    uncovered = sorted(n for n, o in msgs.blobs.items() if o not in claimed)

    # Write.
    outdir = a.out / OUT_SUBDIR
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    (outdir / "LICENSE").write_bytes(msgs.license())
    rel_script = "tests/corpus/tools/import_sisimai.py"
    (outdir / "README.md").write_text(
        "Messages from sisimai's public set-of-emails (https://github.com/sisimai/set-of-emails, "
        "maildir/bsd"
        + (f" at commit {msgs.rev}" if msgs.gitdir else "")
        + "; BSD 2-clause, see LICENSE), copied byte for byte.\n"
        f"Expectations in ../{MANIFEST} come only from rb-sisimai's test/public/*.rb `IsExpected` "
        f"at commit {commit} (https://github.com/sisimai/rb-sisimai), matched to messages by content.\n"
        f"sisimai's REASON is mapped to our kind/bounce_class/reason by `{rel_script}`, "
        "which rebuilds this folder and the manifest.\n",
        encoding="utf-8",
    )
    lines = [
        f"# Generated by {rel_script}; do not edit by hand.",
        "# Messages: sisimai set-of-emails maildir/bsd"
        + (f" at commit {msgs.rev}" if msgs.gitdir else ""),
        f"# Expectations: rb-sisimai {commit} test/public/*.rb IsExpected",
        "",
    ]
    for e in entries:
        f = build(e, unmapped)
        (outdir / e.src_name).write_bytes(msgs.read(e.src_name))
        note = f.pop("_note", None)
        lines.append("[[message]]")
        if note:
            lines.append(f"# {note}")
        if e.also:
            lines.append("# same bytes as sisimai " + ", ".join(e.also) + " (same expectation)")
        for k, v in f.items():
            lines.append(f"{k} = {toml_val(v)}")
        lines.append("")
    (a.out / MANIFEST).write_text("\n".join(lines), encoding="utf-8")

    print(f"rb-sisimai commit: {commit}")
    print(f"imported: {len(entries)}")
    print(f"expectations skipped: {len(skipped)}")
    for label, why in skipped:
        print(f"  {label}: {why}")
    print(f"duplicate expectations folded into one message: {len(dupes)}")
    for label, into in dupes:
        print(f"  {label} = {into}")
    same_bytes = len(msgs.blobs) - len(entries) - len(uncovered)
    print(
        f"set-of-emails messages: {len(msgs.blobs)} = {len(entries)} imported"
        f" + {same_bytes} byte-identical copies of imported ones + {len(uncovered)} without"
        " a usable expectation:"
    )
    for n in uncovered:
        o = msgs.blobs[n]
        if n[:-4] in public_skips:
            why = "its expectation was skipped (skiptonext)"
        elif o in rb_blobs.values():
            why = "rb-sisimai has these bytes but no expectation for them"
        elif n in rb_blobs:
            why = "content differs from rb-sisimai's copy"
        else:
            why = "not in rb-sisimai's set-of-emails (newer)"
        print(f"  {n}: {why}")
    renamed = [
        (e.origin_module, e.index, e.src_name)
        for e in entries
        if e.src_name != "%s-%02d.eml" % (e.origin_module, int(e.index))
    ]
    if renamed:
        print("matched under a new name:")
        for m_, i_, n_ in renamed:
            print(f"  {m_} {i_} -> {n_}")
    if unmapped:
        print("unmapped sisimai reasons (treated as vague bounce): " + ", ".join(sorted(unmapped)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
