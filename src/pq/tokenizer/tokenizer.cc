// placeholder (replaced by the tokenizer implementation)
