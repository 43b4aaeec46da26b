"""``lsm``: the operator tool (LevelDB's ldb / RocksDB's sst_dump in one).

    lsm stats DB [--json]                     levels, files, bytes, amplification, stalls
    lsm get DB KEY [--hex]                    print one value (exit 1 if absent)
    lsm scan DB [--start K] [--stop K] [--prefix P] [--reverse] [--limit N]
                [--keys-only] [--hex]         print key/value pairs
    lsm dump-sst FILE [--limit N]             properties, range tombstones, entries of a table
    lsm dump-wal FILE [--limit N]             the write batches of a log
    lsm dump-manifest FILE                    the version edits of a MANIFEST
    lsm verify DB                             read every table and log; exit 1 on damage
                                              (each damaged file named, with the offset)
    lsm repair DB                             rebuild the MANIFEST from surviving files
    lsm superdisk status|rebuild|scrub --durable D [--cache C] [--repair] [--json]
                                              status is read-only (SuperDisk.inspect: nothing
                                              is written, works on a live array); rebuild and
                                              scrub assemble the array and need it unused

``DB`` is a directory, a file holding a block-device image (BlockFS), or
``superdisk:DURABLE[,CACHE]`` (a SuperDisk assembled from two paths).  Keys
given on the command line are UTF-8 text unless ``--hex`` (then hex, and
output keys/values are hex too; otherwise they are printed with Python
escapes).  Errors print one line naming the file (and offset) and exit 2;
a device or SuperDisk leg that another process holds open is refused
(``LockError``, exit 2) rather than opened a second time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any, Callable, Iterator, Sequence

__all__ = ["main", "open_target"]


def _arg_key(text: str | None, hexmode: bool) -> bytes | None:
    if text is None:
        return None
    return bytes.fromhex(text) if hexmode else text.encode("utf-8")


def _show(data: bytes, hexmode: bool) -> str:
    if hexmode:
        return data.hex()
    return repr(data)[2:-1]


def open_target(spec: str) -> tuple[Any, Callable[[], None]]:
    """A DB target for ``spec`` and the function that releases it."""
    import blockdev
    if spec.startswith("superdisk:"):
        legs = spec[len("superdisk:"):].split(",")
        sd = blockdev.SuperDisk.open(durable=legs[0], cache=legs[1] if len(legs) > 1 else None)
        return sd, sd.close
    if os.path.isfile(spec):
        dev = blockdev.FileDevice(spec)
        return dev, dev.close
    return spec, lambda: None


def _open_db(spec: str, **kw: Any) -> tuple[Any, Callable[[], None]]:
    import lsm
    target, release = open_target(spec)
    try:
        db = lsm.DB(target, **kw)
    except BaseException:
        release()
        raise

    def close() -> None:
        try:
            db.close()
        finally:
            release()
    return db, close


def _file_fs(path: str) -> tuple[Any, str]:
    from blockdev.fs import PosixFS
    d, name = os.path.split(os.path.abspath(path))
    return PosixFS(d), name


@contextlib.contextmanager
def _open_file(path: str) -> Iterator[tuple[Any, str]]:
    """``(readable file, its name)`` for the file at ``path`` in a PosixFS
    of its directory; the file and the file system are closed on exit."""
    fs, name = _file_fs(path)
    f = fs.open(name)
    try:
        yield f, name
    finally:
        f.close()
        fs.close()


# -- commands ------------------------------------------------------------------------

def cmd_stats(args: argparse.Namespace) -> int:
    db, close = _open_db(args.db)
    try:
        st = db.stats()
        if args.json:
            print(json.dumps(st, indent=2, default=str))
        else:
            print(db.get_property("lsm.stats"), end="")
            print(f"files: {st['num_files']}  bytes: {st['total_bytes']}  "
                  f"last sequence: {st['last_sequence']}")
            if "device" in st:
                print(f"device: {st['device']}")
    finally:
        close()
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    db, close = _open_db(args.db)
    try:
        value = db.get(_arg_key(args.key, args.hex))
    finally:
        close()
    if value is None:
        print("(not found)", file=sys.stderr)
        return 1
    print(_show(value, args.hex))
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    db, close = _open_db(args.db)
    n = 0
    try:
        kw: dict[str, Any] = dict(reverse=args.reverse, include_value=not args.keys_only)
        if args.prefix is not None:
            kw["prefix"] = _arg_key(args.prefix, args.hex)
        else:
            kw["start"] = _arg_key(args.start, args.hex)
            kw["stop"] = _arg_key(args.stop, args.hex)
        with db.iterator(**kw) as it:
            for item in it:
                if args.limit is not None and n >= args.limit:
                    break
                if args.keys_only:
                    print(_show(item, args.hex))
                else:
                    print(f"{_show(item[0], args.hex)} => {_show(item[1], args.hex)}")
                n += 1
    finally:
        close()
    return 0


def cmd_dump_sst(args: argparse.Namespace) -> int:
    from lsm.dbformat import unpack_internal_key
    from lsm.sstable.reader import TableReader
    with _open_file(args.file) as (f, name):
        r = TableReader(f, name)
        props = r.properties
        print(f"table {args.file}")
        for field in props.__dataclass_fields__:
            value = getattr(props, field)
            print(f"  {field}: {_show(value, args.hex) if isinstance(value, bytes) else value}")
        print(f"range tombstones: {len(r.range_tombstones)}")
        for start, end, seq in r.range_tombstones:
            print(f"  [{_show(start, args.hex)}, {_show(end, args.hex)}) @ {seq}")
        print("entries:")
        for n, (ikey, value) in enumerate(r.entries()):
            if args.limit is not None and n >= args.limit:
                print("  ...")
                break
            ukey, seq, kind = unpack_internal_key(ikey)
            what = {0: "DEL", 1: "PUT"}.get(kind, f"kind{kind}")
            shown = f" => {_show(value, args.hex)}" if kind == 1 else ""
            print(f"  {_show(ukey, args.hex)} @ {seq} {what}{shown}")
        r.close()
    return 0


def cmd_dump_wal(args: argparse.Namespace) -> int:
    from lsm.batch import WriteBatch
    from lsm.wal import LogReader
    with _open_file(args.file) as (f, name):
        def report(dropped: int, reason: str) -> None:
            print(f"!! skipped {dropped} bytes: {reason}")
        reader = LogReader(f, name, reporter=report)
        for n, record in enumerate(reader):
            if args.limit is not None and n >= args.limit:
                print("...")
                break
            seq, items = WriteBatch.decode(record, name, reader.last_record_offset)
            print(f"@{reader.last_record_offset} seq {seq} count {len(items)}")
            for kind, key, value in items:
                if kind == 1:
                    print(f"  PUT {_show(key, args.hex)} => {_show(value, args.hex)}")
                elif kind == 0:
                    print(f"  DEL {_show(key, args.hex)}")
                else:
                    print(f"  DELRANGE [{_show(key, args.hex)}, {_show(value, args.hex)})")
        if reader.torn_tail:
            print("(log ends in a torn tail)")
    return 0


def cmd_dump_manifest(args: argparse.Namespace) -> int:
    from lsm.version import VersionEdit
    from lsm.wal import LogReader
    with _open_file(args.file) as (f, name):
        reader = LogReader(f, name, paranoid=True)
        for record in reader:
            edit = VersionEdit.decode(record, name, reader.last_record_offset)
            print(f"@{reader.last_record_offset} edit:")
            for field in ("format_version", "log_number", "next_file_number", "last_sequence"):
                value = getattr(edit, field)
                if value is not None:
                    print(f"  {field}: {value}")
            for level, key in edit.compact_pointers:
                print(f"  compact_pointer L{level}: {_show(key[:-8], args.hex)}")
            for level, number in edit.deleted_files:
                print(f"  delete L{level} #{number}")
            for level, fm in edit.new_files:
                print(f"  add L{level} #{fm.number} {fm.size} bytes "
                      f"[{_show(fm.smallest[:-8], args.hex)} .. {_show(fm.largest[:-8], args.hex)}]"
                      f" seq {fm.smallest_seq}..{fm.largest_seq} entries {fm.num_entries}")
    return 0


def _damage(exc: BaseException) -> str:
    """One line for a damage report: the error, the file and the offset."""
    where = ""
    file = getattr(exc, "file", None)
    offset = getattr(exc, "offset", None)
    if file is not None and file not in str(exc):
        where += f" [file {file}"
        where += f", offset {offset}]" if offset is not None else "]"
    elif offset is not None and f"offset {offset}" not in str(exc):
        where += f" [offset {offset}]"
    return f"{type(exc).__name__}: {exc}{where}"


def cmd_verify(args: argparse.Namespace) -> int:
    """Open the DB (replaying its logs), check the Version's invariants and
    read every entry of every table with checksums verified, then scan the
    whole key space.  Exit 0 when all is well, 1 on damage found in the data
    (every damaged table and the failing scan reported by file and offset),
    2 when the DB cannot be opened at all."""
    from blockdev.errors import CorruptionError, Error
    db, close = _open_db(args.db, paranoid_checks=True)
    bad = 0
    try:
        version = db._state.version
        version._check()
        files = [(lv, f) for lv, level in enumerate(version.levels) for f in level]
        for level, f in files:
            try:
                reader = db._table_cache.get(f.number)
                n = sum(1 for _ in reader.entries())
                if n + len(reader.range_tombstones) != f.num_entries:
                    print(f"L{level} #{f.number}: {n} entries, MANIFEST says {f.num_entries}")
                    bad += 1
            except Error as exc:   # report every damaged table, then fail
                print(f"L{level} #{f.number}: DAMAGED: {_damage(exc)}")
                bad += 1
        try:
            count: int | None = sum(1 for _ in db.iterator(include_value=False))
        except CorruptionError as exc:
            # the merged scan reads the same tables: damage already reported
            # above (or found only now) is damage, not an operational error
            print(f"scan: DAMAGED: {_damage(exc)}")
            bad += 1
            count = None
        keys = "?" if count is None else str(count)
        print(f"{len(files)} tables, {keys} live keys: {'OK' if not bad else f'{bad} damaged'}")
    finally:
        close()
    return 1 if bad else 0


def cmd_repair(args: argparse.Namespace) -> int:
    import lsm
    target, release = open_target(args.db)
    try:
        report = lsm.repair_db(target)
    finally:
        release()
    print(json.dumps(report, indent=2, default=str))
    return 0


def cmd_superdisk(args: argparse.Namespace) -> int:
    import blockdev
    from blockdev.superdisk import format_inspect
    if args.action == "status":
        # read-only: assembling would bump the generation and could start a rebuild
        info = blockdev.SuperDisk.inspect(durable=args.durable, cache=args.cache)
        if args.json:
            print(json.dumps(info, indent=2, default=str))
        else:
            print(format_inspect(info), end="")
        return 0
    sd = blockdev.SuperDisk.open(durable=args.durable, cache=args.cache,
                                 background_rebuild=False)
    try:
        if args.action == "rebuild":
            sd.rebuild(wait=True)
        elif args.action == "scrub":
            result = sd.scrub(repair=args.repair)
            print(json.dumps(result, indent=2) if args.json else
                  " ".join(f"{k}={v}" for k, v in result.items()))
        if args.action == "rebuild":
            st = sd.status()
            print(json.dumps(st, indent=2, default=str) if args.json
                  else blockdev.format_status(st))
    finally:
        sd.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lsm", description="superdisk-lsm operator tool")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], summary: str,
            db: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=summary)
        if db:
            sp.add_argument("db", help="directory, device image file, or superdisk:DURABLE[,CACHE]")
        sp.add_argument("--hex", action="store_true", help="keys and values in hex")
        sp.set_defaults(func=fn)
        return sp

    add("stats", cmd_stats, "levels, files, bytes, amplification, stalls").add_argument(
        "--json", action="store_true")
    add("get", cmd_get, "print the value of KEY").add_argument("key")
    sp = add("scan", cmd_scan, "print key/value pairs")
    sp.add_argument("--start")
    sp.add_argument("--stop")
    sp.add_argument("--prefix")
    sp.add_argument("--reverse", action="store_true")
    sp.add_argument("--limit", type=int)
    sp.add_argument("--keys-only", action="store_true")
    for name, fn, summary in (("dump-sst", cmd_dump_sst, "dump one SSTable"),
                              ("dump-wal", cmd_dump_wal, "dump one write-ahead log")):
        sp = add(name, fn, summary, db=False)
        sp.add_argument("file")
        sp.add_argument("--limit", type=int)
    sp = add("dump-manifest", cmd_dump_manifest, "dump a MANIFEST", db=False)
    sp.add_argument("file")
    add("verify", cmd_verify, "check every table and log")
    add("repair", cmd_repair, "rebuild the MANIFEST from the surviving tables and logs")
    sp = sub.add_parser("superdisk", help="SuperDisk status (read-only), rebuild, scrub")
    sp.add_argument("action", choices=("status", "rebuild", "scrub"))
    sp.add_argument("--durable", required=True, help="durable leg (path)")
    sp.add_argument("--cache", help="cache leg (path)")
    sp.add_argument("--repair", action="store_true", help="scrub: fix what it finds")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_superdisk)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from blockdev.errors import Error
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Error as exc:
        print(f"lsm {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:   # e.g. `lsm scan DB | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
