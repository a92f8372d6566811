"""Test oracles: plain per-band networks written from the references' descriptions.

``per_band_baseline.PerBandBSRNN`` (the reference's newest BSRNN) and
``roformer_per_band_baseline.PerBandRoformer`` (MSST's BS-/Mel-RoFormer) compute, the
straightforward way, the functions our batched networks must compute. The tests compare against
them (tests/test_model_equivalence.py, tests/test_roformer.py) and the benchmarks time our
networks against them (benchmarks/bench_model.py). Only torch is needed.
"""
