# bench/plot/throughput.gp - Nexmark throughput per job and parallelism, without and with a
# checkpoint every second: wall clock (left) and per CPU-second (right, with the issue's
# per-core targets). gnuplot -e "datadir='...'; outdir='...'" bench/plot/throughput.gp
set terminal pngcairo size 1400,560 font "DejaVu Sans,11"
set output outdir."/throughput.png"
set multiplot layout 1,2 title "Nexmark: M events/s, without and with a checkpoint every second (medians of interleaved runs)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set key top right
set xtics font ",10"
set bmargin 4
set key opaque
set title "wall clock"
set ylabel "M events/s"
plot datadir."/throughput.dat" using 2:xtic(1) title "no checkpoints" lc rgb "#4477aa", \
     "" using 3 title "checkpoint every 1 s" lc rgb "#ee7733"
set title "per CPU-second (user + system, all threads)"
set ylabel "M events per CPU-s"
set arrow 1 from graph 0, first 3 to graph 1, first 3 nohead dt 2 lw 2 lc rgb "#cc3311" front
set arrow 2 from graph 0, first 1.5 to graph 1, first 1.5 nohead dt 3 lw 2 lc rgb "#aa3377" front
plot datadir."/throughput.dat" using 4:xtic(1) title "no checkpoints" lc rgb "#4477aa", \
     "" using 5 title "checkpoint every 1 s" lc rgb "#ee7733", \
     NaN with lines dt 2 lw 2 lc rgb "#cc3311" title "q0-q2 target: 3 M/CPU-s", \
     NaN with lines dt 3 lw 2 lc rgb "#aa3377" title "q3 target: 1.5 M/CPU-s"
unset multiplot
