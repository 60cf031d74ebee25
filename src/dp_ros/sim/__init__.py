"""robosuite simulation (ROS-free): environment, scripted demonstrators, collection, evaluation."""
