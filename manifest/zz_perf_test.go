package manifest

import (
	"fmt"
	"testing"
	"time"
)

func TestZZPerf(t *testing.T) {
	files := map[string]string{}
	for i := 0; i < 5000; i++ {
		for k, v := range sstable(td, fmt.Sprintf("nb-%d-big", i)) {
			files[k] = v
		}
	}
	root := tree(t, files)
	start := time.Now()
	res, err := Scan(root, ScanOptions{})
	t.Log(len(res.SSTables), err, time.Since(start))
}
