"""A python3 workload of several hundred MB, for `uvmem run --budget 64M` (issue 6).

Builds ~420 MB of live objects (bytes blocks, dicts of lists, a sorted list of tuples),
revisits them in sequential and random order, and prints digests: any page that came
back from swap with wrong bytes changes the output. Deterministic (fixed seed).
"""
import hashlib
import os
import random

rng = random.Random(6)
blocks = [bytes([i % 251]) * 65536 + i.to_bytes(8, "little") for i in range(5000)]  # 330 MB
table = {i: list(range(i % 800)) for i in range(25000)}                              # ~60 MB
pairs = sorted((rng.random(), i) for i in range(300000))                             # ~30 MB

h = hashlib.sha256()
for b in blocks:  # sequential, first to last
    h.update(b)
print("sequential", h.hexdigest())

h = hashlib.sha256()
for _ in range(20000):  # random revisits, some writes
    i = rng.randrange(len(blocks))
    h.update(blocks[i][rng.randrange(65536):][:64])
    if rng.random() < 0.1:
        blocks[i] = blocks[i][:100] + b"x" * 100 + blocks[i][200:]
print("random", h.hexdigest())

# A forked child sees every block, swapped-out ones included (uvmem copies them into the
# child at fork), and the parent swaps on afterwards.
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    d = hashlib.sha256()
    for b in blocks:
        d.update(b)
    os.write(w, d.hexdigest().encode())
    os._exit(0)
os.close(w)
child_digest = os.read(r, 64).decode()
os.close(r)
_, status = os.waitpid(pid, 0)
d = hashlib.sha256()
for b in blocks:
    d.update(b)
print("fork", "same" if child_digest == d.hexdigest() else "DIFFERENT", os.waitstatus_to_exitcode(status))

print("table", sum(len(v) for v in table.values()), sum(sum(v[-3:]) for v in table.values()))
print("pairs", pairs[0][1], pairs[-1][1], sum(i for _, i in pairs[::1000]))
h = hashlib.sha256()
for b in reversed(blocks):
    h.update(b[-200:])
print("reverse", h.hexdigest())
