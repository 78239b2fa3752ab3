"""One module per schema revision, oldest ``0001`` first; never edit one that has shipped."""
