"""ROS-free logic of acting: observation synchronisation by stamp and action-chunk timing."""
