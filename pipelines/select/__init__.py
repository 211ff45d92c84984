"""Selection: named subsets of the pool, by SQL rankings or greedy selectors (k-center, ZIP)."""
