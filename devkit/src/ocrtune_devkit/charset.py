"""The characters the synthetic data uses, and so the tiny tokenizer covers.

Chosen for the confusions the reference user hits (the base model reads 1 as 2):
stroke-count look-alikes, near-identical radicals, digits, full-width punctuation.
"""

LOOKALIKES = "一二三十干千于己已巳未末土士天夫人入八大太犬日曰目自白百田由甲申"
COMMON = "中文字识别模型微调数据图像页码发票金额合计年月日号元角分开始结束上下左右"
DIGITS = "0123456789"
PUNCTUATION = "，。：；！？、（）"

CJK_CHARS = LOOKALIKES + COMMON
ALL_CHARS = CJK_CHARS + DIGITS + PUNCTUATION
