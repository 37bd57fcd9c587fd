"""The model registry stage: register a version, the promotion gate (pure rules + the run that applies them), aliases, promotion, rollback and history."""
