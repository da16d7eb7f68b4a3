"""``flags2 bench``: run a matrix of downloads, each in its own process, and compare.

Every run gets a fresh bundled server seeded alike, so every mode faces the
same delays and faults and the ideal time of each run is known in advance. A
sample run (the default demo on 2 cores; some columns left out)::

    $ flags2 bench --seed 7
    flags2 bench: 5 cells x 3 runs; seed 7 (replay with --seed 7); delays 0.1-0.4 s...
    mode        server    -m  codes       OK/404/err  elapsed  speed-up  ideal   eff
    sequential  DELAY      1  POP20 (20)  20/0/0        5.08s      1.0x  5.03s  0.99
    ...

One module per job:

* :mod:`~flags2.bench.command` and :mod:`~flags2.bench.defaults`: the options;
* :mod:`~flags2.bench.model`: code sets, cells, settings, runs and rows;
* :mod:`~flags2.bench.matrix`: the comma lists parsed and crossed into cells;
* :mod:`~flags2.bench.run`: one run, its server and its measured child;
* :mod:`~flags2.bench.peers`: curl and aria2c as rows beside flags2;
* :mod:`~flags2.bench.session`: every run in turn, then the outputs;
* :mod:`~flags2.bench.table` and :mod:`~flags2.bench.record`: table and ``--json``;
* :mod:`~flags2.bench.ideal`, :mod:`~flags2.bench.measure`,
  :mod:`~flags2.bench.plot`: the ideal time, measuring a child, the timeline;
* :mod:`~flags2.bench.floor`: httpx2's own CPU per request, the reference.

Importing this package imports nothing else: ``flags2 download`` does not pay
for the bench.
"""

__all__: list[str] = []
