"""Starting node graphs: the graph descriptions, the dp-ros runner and the lifecycle client."""
