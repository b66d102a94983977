"""Backbones and stems, projection heads, and the self-supervised methods: the method contract
(method.py), its registry (registry.py) and one file per method, with the parts they hold (EMA
targets, memory banks, queues, prototypes, split and sync BN)."""
