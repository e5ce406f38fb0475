"""The classic learning-to-forget tasks' data, generated in code: pure numpy, seeded, resumable.

    seeded     SeededBatches (batch k is a pure function of (seed, k)), masks; the batch keys
    reber      Reber grammar, embedded Reber grammar (ERG), continual ERG (CERG):
               Gers, Schmidhuber & Cummins (2000)
    long_lag   adding problem and temporal order: Hochreiter & Schmidhuber (1997)
    frequency  frequency discrimination of sine waves, three samplings: Neil, Pfeiffer & Liu (2016)

Each module's docstring cites its paper and states the protocol choices. The training tasks
built on them are in `ltf.tasks.synthetic`.
"""
