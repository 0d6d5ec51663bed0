"""Training: the SID vocabulary, the task mix, the completion-only trainer (1 process or torchrun), the ranker."""
