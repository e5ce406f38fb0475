"""ltf: learning to forget. Recurrent sequence models whose subject is forgetting, in JAX."""
