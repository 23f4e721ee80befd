"""
`python -P -m gateway.worker ...`: how worker 0 starts the node's other workers (gateway/workers.py).

twistd's own command line, run from the package worker 0 imported: `-m` finds
this module on the same sys.path, where `python -c` would first look in the
current directory.
"""

from twisted.scripts.twistd import run

if __name__ == "__main__":
    run()
