"""The random misuse programs of tests/misuse/test_misuse_fuzz.py, by concern: the model of
every allocator (`model`), the program's state and checks (`world`), and its actions:
valid block operations (`blocks`), misuse (`misuse`), containers (`containers`)."""
