"""Code the tests share (no test module imports another): ``from helpers.<module> import ...``, with
``tests/`` on ``sys.path`` (the root conftest.py puts it there; bench/learning_ci.py and bench/step_parity.py
do the same)."""
