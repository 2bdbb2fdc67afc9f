module streamops.invalid/xiu-bench/loadclient

go 1.22
