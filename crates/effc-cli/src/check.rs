//! `effc check`

use std::path::PathBuf;
use std::process::ExitCode;

use effc_ir::cost::group;
use effc_ir::{Model, Options, Spec};

use crate::output::outln;
use crate::Failure;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// .enet files to check (every model in each).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print nothing for valid files.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let mut ok = true;
    for path in &args.files {
        let text = match effc_driver::files::read_text(path, effc_driver::files::Input::SPEC) {
            Ok(t) => t,
            Err(e) => {
                ok = false;
                eprintln!("{e}");
                continue;
            }
        };
        let result = (|| {
            let specs = Spec::parse_all(&path.display().to_string(), &text)?;
            let mut out = vec![];
            let mut errors = vec![];
            for s in &specs {
                match Model::build(s, &Options::default()) {
                    Ok(m) => out.push(m),
                    Err(e) => errors.extend(e.0),
                }
            }
            if errors.is_empty() {
                Ok(out)
            } else {
                Err(effc_syntax::Diagnostics(errors))
            }
        })();
        match result {
            Ok(models) => {
                if !args.quiet {
                    for m in models {
                        let c = m.cost();
                        outln!(
                            "{}: model {} ok: {} params, {} MACs at {}px",
                            path.display(),
                            m.name,
                            group(c.params),
                            group(c.macs),
                            m.resolution
                        );
                    }
                }
            }
            Err(d) => {
                ok = false;
                eprintln!("{}", d.render(crate::color()));
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
