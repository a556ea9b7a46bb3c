# bench/plot/memory.gp - resident memory of heap keyed state against the number of keys, and
# bytes per entry above the key bytes (right axis) with the issue's 48-byte target.
set terminal pngcairo size 1000,560 font "DejaVu Sans,11"
set output outdir."/memory.png"
set title "Heap keyed state, ValueState<i64> per i64 key: resident memory above the job's baseline"
set xlabel "keys (millions)"
set ylabel "state MB (VmRSS growth)"
set y2label "bytes per entry above the key bytes"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:80]
set grid
set key top left opaque box
set arrow 1 from graph 0, second 48 to graph 1, second 48 nohead dt 2 lw 2 lc rgb "#cc3311" front
plot datadir."/memory.dat" using 1:2 axes x1y1 with linespoints pt 7 lw 2 lc rgb "#4477aa" title "state MB (left axis)", \
     "" using 1:3 axes x1y2 with linespoints pt 5 lw 2 lc rgb "#ee7733" title "bytes per entry above the key bytes (right axis)", \
     NaN with lines dt 2 lw 2 lc rgb "#cc3311" title "target: 48 bytes per entry (right axis)"
