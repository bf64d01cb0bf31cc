module github.com/meshfleet/meshfleet

go 1.26
