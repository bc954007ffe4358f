#!/usr/bin/env python3
"""A deterministic heap workload for running python3 under `uvmem run`.

Prints only values that are the same on every run (digests, counts, captured child output):
no timings, addresses, pids or paths. tests/programs/run_program_test.sh runs it natively
and under uvmem and requires byte-identical output.

What it exercises, section by section:
  lists/dicts   1M-entry lists of ints and strings, a 1M-entry dict and 12 MB of bytes
                (~200 MB of heap with PYTHONMALLOC=malloc), checked, churned and digested
  subprocess    a child python and /bin/echo, stdout captured and stdin piped (CPython
                3.10+ spawns them with vfork+exec)
  fork          a child that walks the parent's structures (heap pages it inherited) and
                reports a digest through a pipe, then os._exit
  threads       4 threads building partial dicts, merged and checked
  read(2)       os.read / os.pread / FileIO.read / recv into fresh (untouched) buffers and
                os.readv / readinto into fresh bytearrays, from a file, a pipe and a socket
  multiprocessing a small Pool (fork context)
"""
import hashlib
import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading

N = 1_000_000  # entries in the big list/dict


def out(label, value):
    print(f"{label}: {value}", flush=True)


def digest_ints(values):
    h = hashlib.sha256()
    packer = struct.Struct("<q")
    for v in values:
        h.update(packer.pack(v))
    return h.hexdigest()


def digest_strs(values):
    h = hashlib.sha256()
    for s in values:
        h.update(s.encode())
        h.update(b"\0")
    return h.hexdigest()


def digest_dict(d):
    """d: str -> int; hashed in insertion order, which is deterministic."""
    h = hashlib.sha256()
    packer = struct.Struct("<q")
    for k, v in d.items():
        h.update(k.encode())
        h.update(packer.pack(v))
    return h.hexdigest()


def key(i):
    return f"key-{i:08d}-{(i * 2654435761) & 0xFFFFFFFF:08x}"


# ---------------------------------------------------------------------------------------------
# Large lists and dicts.
def build_structures():
    ints = [(i * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFF for i in range(N)]
    strs = [key(i) for i in range(N)]
    table = {strs[i]: ints[i] for i in range(N)}
    blobs = [bytes([i & 0xFF]) * (64 + i % 512) for i in range(40_000)]  # ~12 MB of bytes
    return ints, strs, table, blobs


def check_structures(ints, strs, table, blobs):
    assert len(ints) == N and len(strs) == N and len(table) == N
    for i in range(0, N, 997):
        k = key(i)
        assert strs[i] == k, (i, strs[i])
        assert table[k] == ints[i], (i, table[k])
    for i, b in enumerate(blobs):
        assert len(b) == 64 + i % 512 and b[0] == i & 0xFF and b[-1] == i & 0xFF, i
    s = sorted(ints)
    assert all(s[i] <= s[i + 1] for i in range(0, N - 1, 101))
    out("ints.sum", sum(ints))
    out("ints.sorted", digest_ints(s))
    out("strs", digest_strs(strs))
    out("strs.sorted_rev", digest_strs(sorted(strs, reverse=True)[:100_000]))
    out("table", digest_dict(table))
    out("blobs", hashlib.sha256(b"".join(blobs)).hexdigest())
    # Churn: delete half the dict, grow it back, rebuild lists (frees and reallocations).
    for i in range(0, N, 2):
        del table[strs[i]]
    assert len(table) == N // 2
    for i in range(0, N, 2):
        table[strs[i]] = -ints[i]
    out("table.churned", digest_dict(table))
    grown = []
    for i in range(200_000):
        grown.append(str(i) * (1 + i % 7))
    out("grown", digest_strs(grown))
    return heap_digest(ints, strs, table)


def heap_digest(ints, strs, table):
    h = hashlib.sha256()
    h.update(digest_ints(ints).encode())
    h.update(digest_strs(strs).encode())
    h.update(digest_dict(table).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# subprocess: a child python and /bin/echo.
def run_subprocesses():
    child = subprocess.run(
        [sys.executable, "-c",
         "import hashlib; x = [str(i) for i in range(300000)]; "
         "print(len(x), hashlib.sha256(''.join(x).encode()).hexdigest())"],
        capture_output=True, text=True, check=True)
    out("subprocess.python", child.stdout.strip())
    echo = subprocess.run(["/bin/echo", "hello", "from", "echo"], capture_output=True,
                          check=True)
    out("subprocess.echo", echo.stdout.decode().strip())
    # Popen with pipes in both directions: the child echoes a large stdin back.
    payload = ("".join(key(i) for i in range(50_000))).encode()
    p = subprocess.Popen([sys.executable, "-c",
                          "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d[::-1])"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    data, _ = p.communicate(payload)
    assert p.returncode == 0 and data == payload[::-1]
    out("subprocess.roundtrip", hashlib.sha256(data).hexdigest())


# ---------------------------------------------------------------------------------------------
# os.fork: the child reads the parent's heap.
def fork_child_digest(ints, strs, table, expected):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            msg = heap_digest(ints, strs, table)
            # Allocate in the child too: its heap must work after fork.
            extra = [key(i) for i in range(100_000)]
            msg += " " + digest_strs(extra)
            os.write(w, msg.encode())
            os.close(w)
            os._exit(0)
        except BaseException:  # never return into the parent's code
            os._exit(3)
    os.close(w)
    chunks = []
    while True:
        c = os.read(r, 4096)
        if not c:
            break
        chunks.append(c)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    child = b"".join(chunks).decode()
    assert child.split(" ")[0] == expected, \
        f"fork child saw different heap contents than the parent: {child} != {expected}"
    out("fork.child", child)


# ---------------------------------------------------------------------------------------------
# threads: 4 builders, merged.
def run_threads():
    parts = [None] * 4
    per = 60_000

    def build(t):
        d = {}
        for i in range(t * per, (t + 1) * per):
            d[key(i)] = [i, str(i * 7), bytes(i % 64)]
        parts[t] = d

    threads = [threading.Thread(target=build, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = {}
    for d in parts:
        merged.update(d)
    assert len(merged) == 4 * per
    for i in range(0, 4 * per, 1013):
        assert merged[key(i)] == [i, str(i * 7), bytes(i % 64)]
    h = hashlib.sha256()
    for k in sorted(merged):
        v = merged[k]
        h.update(k.encode())
        h.update(str(v[0]).encode())
        h.update(v[1].encode())
        h.update(v[2])
    out("threads.merged", h.hexdigest())

    # A shared list appended to under a lock.
    shared = []
    lock = threading.Lock()

    def appender(t):
        local = [f"{t}:{i}" for i in range(50_000)]
        with lock:
            shared.extend(local)

    threads = [threading.Thread(target=appender, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out("threads.shared", digest_strs(sorted(shared)))


# ---------------------------------------------------------------------------------------------
# read(2) into fresh buffers, from a pipe and a file.
def run_reads(tmpdir):
    data = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(200_000))  # 6.4 MB
    path = os.path.join(tmpdir, "data.bin")
    with open(path, "wb") as f:
        f.write(data)

    # os.read: CPython allocates a fresh bytes object per call and read(2)s into it.
    fd = os.open(path, os.O_RDONLY)
    chunks = []
    while True:
        c = os.read(fd, 1 << 20)
        if not c:
            break
        chunks.append(c)
    os.close(fd)
    assert b"".join(chunks) == data
    out("read.os_read", hashlib.sha256(b"".join(chunks)).hexdigest())

    # One pread(2) of the whole file: a fresh 6.4 MB bytes object, its pages untouched until
    # the kernel writes them (copy_to_user into never-faulted heap pages).
    fd = os.open(path, os.O_RDONLY)
    whole = os.pread(fd, len(data) + 1, 0)
    os.close(fd)
    assert whole == data
    out("read.pread", hashlib.sha256(whole).hexdigest())
    del whole

    # Unbuffered FileIO.read(n): also a fresh bytes object per call.
    with open(path, "rb", buffering=0) as f:
        parts = []
        while True:
            c = f.read(3 << 20)
            if not c:
                break
            parts.append(c)
    assert b"".join(parts) == data
    out("read.fileio", hashlib.sha256(b"".join(parts)).hexdigest())

    # os.readv into freshly allocated bytearrays (CPython zeroes them before the read).
    fd = os.open(path, os.O_RDONLY)
    bufs = [bytearray(1 << 20) for _ in range(len(data) // (1 << 20) + 1)]
    n = os.readv(fd, bufs)
    os.close(fd)
    assert n == len(data)
    got = b"".join(bufs)[:n]
    assert got == data
    out("read.readv", hashlib.sha256(got).hexdigest())

    # readinto a big fresh bytearray from a file.
    big = bytearray(len(data))
    with open(path, "rb", buffering=0) as f:
        view = memoryview(big)
        off = 0
        while off < len(big):
            k = f.readinto(view[off:])
            assert k
            off += k
    assert big == data
    out("read.readinto_file", hashlib.sha256(big).hexdigest())

    # readinto from a pipe fed by a writer thread.
    r, w = os.pipe()

    def writer():
        mv = memoryview(data)
        off = 0
        while off < len(mv):
            off += os.write(w, mv[off:off + 65536])
        os.close(w)

    t = threading.Thread(target=writer)
    t.start()
    dst = bytearray(len(data))
    mv = memoryview(dst)
    off = 0
    with open(r, "rb", buffering=0) as rf:
        while True:
            k = rf.readinto(mv[off:off + 100_000])
            if not k:
                break
            off += k
    t.join()
    assert off == len(data) and dst == data
    out("read.readinto_pipe", hashlib.sha256(dst).hexdigest())

    # os.read(pipe, 1 MiB) and socket recv(1 MiB): fresh buffers, partly filled per call.
    r, w = os.pipe()
    t = threading.Thread(target=lambda: (os.write(w, data), os.close(w)))
    t.start()
    got = []
    while True:
        c = os.read(r, 1 << 20)
        if not c:
            break
        got.append(c)
    t.join()
    os.close(r)
    assert b"".join(got) == data
    out("read.os_read_pipe", hashlib.sha256(b"".join(got)).hexdigest())

    a, b = socket.socketpair()
    t = threading.Thread(target=lambda: (a.sendall(data), a.shutdown(socket.SHUT_WR)))
    t.start()
    got = []
    while True:
        c = b.recv(1 << 20)
        if not c:
            break
        got.append(c)
    t.join()
    a.close()
    b.close()
    assert b"".join(got) == data
    out("read.recv", hashlib.sha256(b"".join(got)).hexdigest())


# ---------------------------------------------------------------------------------------------
# multiprocessing Pool, fork context.
def square_digest(i):
    xs = [j * j for j in range(i * 10_000)]
    return i, hashlib.sha256(repr(xs).encode()).hexdigest()[:16]


def run_pool():
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.map(square_digest, range(1, 9))
    out("pool", " ".join(f"{i}={d}" for i, d in results))


def main():
    ints, strs, table, blobs = build_structures()
    expected = check_structures(ints, strs, table, blobs)
    out("heap", expected)
    run_subprocesses()
    fork_child_digest(ints, strs, table, expected)
    del ints, strs, table, blobs
    run_threads()
    with tempfile.TemporaryDirectory() as tmpdir:
        run_reads(tmpdir)
    run_pool()
    out("done", "ok")


if __name__ == "__main__":
    main()
