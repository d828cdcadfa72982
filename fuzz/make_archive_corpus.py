#!/usr/bin/env python3
"""Write the hand-made seed corpus of fuzz_archive into fuzz/corpus/archive/.

Run once (python3 fuzz/make_archive_corpus.py); the small outputs are
committed. Each seed is a trick the extractor must refuse or handle:
path traversal, absolute paths, symlink escapes and chains, hard links
out, device nodes, FIFOs, duplicates, a small zip and a tiny zip bomb.
"""
import gzip
import io
import lzma
import os
import subprocess
import tarfile
import zipfile

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "archive")


def tar_bytes(members, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for m in members:
            kind, name = m[0], m[1]
            info = tarfile.TarInfo(name)
            info.mtime = 0
            data = b""
            if kind == "f":
                data = m[2]
                info.size = len(data)
                info.mode = m[3] if len(m) > 3 else 0o644
            elif kind == "d":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            elif kind == "l":
                info.type = tarfile.SYMTYPE
                info.linkname = m[2]
            elif kind == "h":
                info.type = tarfile.LNKTYPE
                info.linkname = m[2]
            elif kind == "c":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
            elif kind == "b":
                info.type = tarfile.BLKTYPE
                info.devmajor, info.devminor = 8, 0
            elif kind == "p":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def sparse_tar(name, size, offset, data):
    """A PAX (GNU 0.1) sparse file: size bytes with data at offset, which
    may lie past size (tarfile writes the map as given)."""
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.mode = 0o755
    info.size = len(data)
    info.pax_headers = {"GNU.sparse.major": "0", "GNU.sparse.minor": "1",
                        "GNU.sparse.size": str(size), "GNU.sparse.numblocks": "1",
                        "GNU.sparse.map": "%d,%d" % (offset, len(data))}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zinfo(name, mode=0o644):
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100000 | mode) << 16
    return info


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    exe = b"#!/bin/sh\necho otelcol\n"
    good = tar_bytes([("f", "otelcol", exe, 0o755), ("d", "conf"),
                      ("f", "conf/config.yaml", b"receivers: {}\n"),
                      ("l", "conf/link", "config.yaml"), ("h", "otelcol2", "otelcol")])
    write("good.tar", good)
    write("good.tar.gz", gzip.compress(good, mtime=0))
    write("good.tar.xz", lzma.compress(good))
    write("good.tar.zst", subprocess.run(["zstd", "-q", "-c"], input=good,
                                         check=True, capture_output=True).stdout)
    write("pax.tar", tar_bytes([("f", "bin/otelcol", exe, 0o755)], tarfile.PAX_FORMAT))
    write("traversal.tar", tar_bytes([("f", "ok", b"x"), ("f", "a/../../evil", b"evil")]))
    write("absolute.tar", tar_bytes([("f", "/tmp/evil", b"evil")]))
    write("symlink-out-then-write.tar",
          tar_bytes([("l", "l", "../../.."), ("f", "l/evil", b"evil")]))
    write("symlink-abs.tar", tar_bytes([("l", "l", "/etc"), ("f", "l/evil", b"evil")]))
    write("symlink-inside-then-write.tar",
          tar_bytes([("d", "d"), ("l", "l", "d"), ("f", "l/x", b"x")]))
    write("symlink-chain.tar",
          tar_bytes([("d", "d"), ("l", "d/l", ".."), ("l", "e", "d/l/.."), ("f", "e/evil", b"e")]))
    write("symlink-loop.tar", tar_bytes([("l", "a", "b"), ("l", "b", "a")]))
    write("symlink-replaced-by-dir.tar",
          tar_bytes([("l", "l", "../.."), ("d", "l"), ("f", "l/x", b"x")]))
    write("hardlink-out.tar", tar_bytes([("h", "h", "../../etc/passwd")]))
    write("hardlink-abs.tar", tar_bytes([("h", "h", "/etc/passwd")]))
    write("hardlink-to-symlink.tar",
          tar_bytes([("d", "a"), ("d", "a/b"), ("l", "a/b/l", "../.."), ("h", "x", "a/b/l")]))
    write("device.tar", tar_bytes([("c", "null"), ("b", "sda")]))
    write("fifo.tar", tar_bytes([("f", "ok", b"x"), ("p", "fifo")]))
    write("duplicate.tar", tar_bytes([("f", "otelcol", b"old"), ("f", "otelcol", exe, 0o755)]))
    write("file-replaces-dir.tar", tar_bytes([("d", "a"), ("f", "a/b", b"x"), ("f", "a", b"y")]))
    write("implied-dir-replaced.tar",
          tar_bytes([("f", "bin/otelcol", b"x"), ("f", "sbin/otelcol", b"y"), ("l", "bin", "sbin")]))
    write("sparse-far.tar", sparse_tar("otelcol", 100, 1 << 40, b"hello"))
    write("dot-entries.tar", tar_bytes([("d", "./"), ("f", "./x", b"x"), ("f", ".//y", b"y")]))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zinfo("otelcol", 0o755), exe)
        z.writestr(zinfo("README.md"), b"hi\n")
    write("small.zip", buf.getvalue())

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zinfo("../evil"), b"evil")
    write("traversal.zip", buf.getvalue())

    # Tiny zip bomb: 4 MiB of zeros deflate to about 4 KiB.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr(zinfo("bomb"), bytes(4 << 20))
    write("bomb.zip", buf.getvalue())
    write("bomb.tar.gz", gzip.compress(tar_bytes([("f", "bomb", bytes(4 << 20))]), 9, mtime=0))

    write("elf-binary", b"\x7fELF\x02\x01\x01" + bytes(120))
    write("script-binary", b"#!/bin/sh\nexit 0\n")
    write("gzip-not-tar", gzip.compress(b"just some text, not a tar\n" * 20, mtime=0))


if __name__ == "__main__":
    main()
