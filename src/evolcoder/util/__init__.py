"""Small helpers, one module per job, each with one implementation for the whole package:
`fences` (Markdown code blocks in model text), `stops` (cutting at stop strings), `atomic`
(outputs that appear complete or not at all), `hashing` (content and canonical-JSON
digests), `hubid` (a local path or a hub id?). JSON and JSONL reading and writing is
`evolcoder.jsonio`. Leaf modules: they import nothing else of evolcoder but `errors`.
"""
