# Lets `pytest` run from a checkout without installing (the repo root on sys.path).
