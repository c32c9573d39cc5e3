"""Training the starter model: trainer, data sources, archive readers, recordings tables, augmentation.

Never imported by the query path (indexer/starter/ holds what a query loads)."""
