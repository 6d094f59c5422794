"""The visual tokenizer: MAGVIT-2 style conv encoder/decoder with lookup-free quantization.

model.py (FrameTokenizer, LFQ, code <-> bits <-> sub-codes), losses.py, api.py (encode/decode),
frames.py (FrameSource), train.py, evaluate.py, tokenize.py (token cache).
"""
