"""TFDS builders for the data sets that are records, in the array_record format (no TensorFlow).

    physionet2012           PhysioNet/CinC 2012: one example a stay; splits set_a, set_b, set_c
    ptb                     Penn Treebank (Mikolov's split): one example a line, with its index
    tiny_shakespeare_local  karpathy's input.txt from a local file (the catalog's builder downloads
                            it with TensorFlow)

`prepare.py` builds any of them from a manual folder (`tfds build` itself needs TensorFlow) and
keys prepared data by the content of the files they came from. Package files import nothing:
import the builder's module to register it, then `tfds.data_source(name, data_dir=...)`.
"""
