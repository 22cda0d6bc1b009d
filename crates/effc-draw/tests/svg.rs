//! Every picture parses and renders (resvg), and holds one element per stage or
//! per model. The renderings are written to `target/effc-draw/*.png` to look at.

use effc_draw::{architecture, chart, Budget, Chart, Point, Series};
use effc_ir::{Model, Options, Spec};

fn model(name: &str) -> Model {
    Model::build(&Spec::builtin(name).unwrap(), &Options::default()).unwrap()
}

/// Parses and renders `svg`; returns the number of pixels that are not white.
fn render(svg: &str, name: &str) -> usize {
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(svg, &opt).unwrap_or_else(|e| panic!("{name}: {e}"));
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("effc-draw");
    std::fs::create_dir_all(&dir).unwrap();
    pixmap.save_png(dir.join(format!("{name}.png"))).unwrap();
    pixmap
        .pixels()
        .iter()
        .filter(|p| (p.red(), p.green(), p.blue()) != (255, 255, 255))
        .count()
}

#[test]
fn architecture_has_one_group_per_stage_and_one_slab_per_block() {
    for name in ["b0", "b7", "v2-s", "lite0", "l2"] {
        let m = model(name);
        let svg = architecture(&m);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let stages: Vec<_> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("stage"))
            .collect();
        assert_eq!(stages.len(), m.stages.len(), "{name}");
        for (g, s) in stages.iter().zip(&m.stages) {
            let slabs = g.children().filter(|n| n.has_tag_name("rect")).count();
            assert_eq!(slabs, s.repeats, "{name} stage {}", s.index);
            let texts: Vec<&str> = g
                .children()
                .filter(|n| n.has_tag_name("text"))
                .filter_map(|n| n.text())
                .collect();
            let out = s.blocks.last().unwrap().out_shape;
            assert!(
                texts.contains(&format!("×{}", s.repeats).as_str()),
                "{name}: {texts:?}"
            );
            assert!(
                texts.contains(&format!("{}×{}×{}", out[1], out[2], out[0]).as_str()),
                "{name}: {texts:?}"
            );
        }
        for id in ["input", "stem", "head", "classifier"] {
            assert!(
                doc.descendants().any(|n| n.attribute("id") == Some(id)),
                "{name}: no {id}"
            );
        }
        assert!(
            render(&svg, &format!("arch-{name}")) > 1000,
            "{name}: blank"
        );
    }
}

#[test]
fn slabs_show_the_scaling() {
    // B7 is deeper, wider and larger than B0: more slabs, wider and taller ones.
    let slab = |svg: &str| -> Vec<(f64, f64)> {
        let doc = roxmltree::Document::parse(svg).unwrap();
        doc.descendants()
            .filter(|n| n.attribute("class") == Some("stage"))
            .flat_map(|g| g.children().filter(|n| n.has_tag_name("rect")))
            .map(|r| {
                let f = |a: &str| r.attribute(a).unwrap().parse::<f64>().unwrap();
                (f("width"), f("height"))
            })
            .collect()
    };
    let b0 = slab(&architecture(&model("b0")));
    let b4 = slab(&architecture(&model("b4")));
    assert_eq!(b0.len(), 16);
    assert_eq!(b4.len(), 32);
    assert!(
        b4[0].0 > b0[0].0 && b4[0].1 > b0[0].1,
        "{:?} {:?}",
        b4[0],
        b0[0]
    );
}

fn point(label: &str, x: f64, y: f64, meets: bool, chosen: bool) -> Point {
    Point {
        label: label.into(),
        x,
        y,
        meets,
        chosen,
    }
}

#[test]
fn chart_has_one_labelled_point_per_model() {
    let c = Chart {
        title: "top-1 against latency".into(),
        x_label: "latency (ms)".into(),
        y_label: "ImageNet top-1 (%)".into(),
        series: vec![
            Series {
                name: "EfficientNet".into(),
                points: vec![
                    point("b0", 150.0, 77.1, true, false),
                    point("b1", 230.0, 79.1, true, true),
                    point("b2", 330.0, 80.1, false, false),
                ],
            },
            Series {
                name: "Lite".into(),
                points: vec![
                    point("lite0", 120.0, 75.1, true, false),
                    point("lite1", 190.0, 76.7, true, false),
                ],
            },
        ],
        budgets: vec![Budget::X(300.0, "budget 300 ms".into())],
        note: Some("not timed: b7 (over the time budget)".into()),
    };
    let svg = chart(&c).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    for label in [
        "b0",
        "b1",
        "b2",
        "lite0",
        "lite1",
        "chosen",
        "budget 300 ms",
    ] {
        let n = doc
            .descendants()
            .filter(|n| n.has_tag_name("text") && n.text().map(str::trim) == Some(label))
            .count();
        assert_eq!(n, 1, "{label}");
    }
    // 5 points, 2 legend markers, the ring around the chosen one.
    let circles = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .count();
    assert_eq!(circles, 5 + 2 + 1);
    assert!(svg.contains("not timed: b7"));
    assert!(render(&svg, "chart") > 1000);

    // Nothing to draw, or a latency that cannot go on a log axis, is an error.
    let empty = Chart {
        series: vec![],
        ..c.clone()
    };
    assert!(chart(&empty).is_err());
    let mut bad = c;
    bad.series[0].points[0].x = 0.0;
    assert!(chart(&bad).unwrap_err().to_string().contains("b0"));
}

#[test]
fn overlapping_labels_are_left_out_but_not_their_points() {
    let c = Chart {
        title: "t".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        series: vec![Series {
            name: "s".into(),
            points: vec![
                point("first", 100.0, 1.0, true, false),
                point("chosen-one", 100.0, 1.0, true, true),
                point("far", 1000.0, 2.0, false, false),
            ],
        }],
        budgets: vec![],
        note: None,
    };
    let svg = chart(&c).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(str::trim))
        .collect();
    assert!(
        texts.contains(&"chosen-one") && texts.contains(&"far"),
        "{texts:?}"
    );
    assert!(!texts.contains(&"first"), "{texts:?}");
    // 3 points, 1 legend marker, the ring.
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("circle"))
            .count(),
        5
    );
}

/// Training curves: both panels, one line per curve, a dashed line and label
/// per stage boundary; nothing to plot is an error.
#[test]
fn training_curves_mark_the_stages() {
    use effc_draw::{curves, Curve, Curves};
    let loss: Vec<(f64, f64)> = (0..120)
        .map(|t| (t as f64, 2.3 / (1.0 + t as f64 / 30.0)))
        .collect();
    let c = Curves {
        title: "tiny: 120 steps".into(),
        loss: vec![
            Curve {
                name: "training loss".into(),
                points: loss,
            },
            Curve {
                name: "validation loss".into(),
                points: vec![(40.0, 1.4), (80.0, 1.0), (120.0, 0.8)],
            },
        ],
        accuracy: vec![Curve {
            name: "top-1".into(),
            points: vec![(40.0, 41.0), (80.0, 63.0), (120.0, 71.5)],
        }],
        stages: vec![(0.0, "size 128".into()), (60.0, "size 192".into())],
        total: 120.0,
    };
    let svg = curves(&c).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    for want in [
        "size 128",
        "size 192",
        "training loss",
        "validation loss",
        "top-1",
        "step",
    ] {
        assert!(
            texts.iter().any(|t| t.contains(want)),
            "no `{want}` in {texts:?}"
        );
    }
    assert!(render(&svg, "curves") > 10_000);
    let empty = Curves {
        loss: vec![],
        accuracy: vec![],
        ..c
    };
    assert!(curves(&empty).is_err());
}
