"""The Python side of the interop tests in tests/shared_memory.rs.

Usage: python3 shm_peer.py COMMAND ARGS...

  check-and-reply NAME SIZE SEED REPLY_SEED
      Open the existing block NAME, check its size and that it holds
      pattern(SEED), overwrite it with pattern(REPLY_SEED), close it and
      leave it in place.
  create NAME SIZE SEED
      Create the block NAME filled with pattern(SEED), close it and leave it
      in place when exiting.
  create-auto SIZE SEED
      As create, with a name Python generates; print the name.
  open-tracked NAME
      Open NAME and close it, leaving it registered with the resource
      tracker (what a plain `SharedMemory(name)` does in CPython 3.8-3.12).
  unlink NAME
      Open NAME and unlink it.

Any failure is reported on stderr with exit status 1. A successful command
writes nothing to stderr, so any resource tracker warning shows up there.
"""

import sys
from multiprocessing import resource_tracker, shared_memory


def pattern(seed, size):
    """The test pattern; tests/shared_memory.rs computes the same bytes."""
    return bytes((i * 31 + seed) % 251 for i in range(size))


def untrack(shm):
    """Stop the resource tracker from unlinking `shm` when Python exits.

    CPython 3.8-3.12 registers every SharedMemory it constructs, also one
    it only opened, and its tracker process unlinks every block still
    registered when the program ends (warning about "leaked shared_memory
    objects"). Python 3.13 has SharedMemory(..., track=False) instead.
    """
    resource_tracker.unregister(shm._name, "shared_memory")


def fail(message):
    print(f"shm_peer.py: {message}", file=sys.stderr)
    sys.exit(1)


def check(shm, size, seed):
    if shm.size != size:
        fail(f"{shm.name}: size {shm.size}, expected {size}")
    data = bytes(shm.buf)
    expected = pattern(seed, size)
    if data != expected:
        at = next(i for i in range(size) if data[i] != expected[i])
        fail(f"{shm.name}: byte {at} is {data[at]}, expected {expected[at]}")


def create(name, size, seed):
    shm = shared_memory.SharedMemory(name=name, create=True, size=size)
    untrack(shm)
    shm.buf[:] = pattern(seed, size)
    name = shm.name
    shm.close()
    return name


def main(argv):
    command, args = argv[1], argv[2:]
    if command == "check-and-reply":
        name, size, seed, reply = args[0], int(args[1]), int(args[2]), int(args[3])
        shm = shared_memory.SharedMemory(name=name, create=False)
        untrack(shm)
        check(shm, size, seed)
        shm.buf[:] = pattern(reply, size)
        shm.close()
    elif command == "create":
        create(args[0], int(args[1]), int(args[2]))
    elif command == "create-auto":
        print(create(None, int(args[0]), int(args[1])))
    elif command == "open-tracked":
        shm = shared_memory.SharedMemory(name=args[0])
        shm.close()
    elif command == "unlink":
        shm = shared_memory.SharedMemory(name=args[0])
        shm.close()
        shm.unlink()
    else:
        fail(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv)
