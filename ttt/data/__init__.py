"""TTT data: leave-one-out synthetic tasks, tokenization with the prefix-loss mask, DataModules."""
