"""The segment expression language: PQL text → AST (``parser``) → engine SQL (``compile``)."""
