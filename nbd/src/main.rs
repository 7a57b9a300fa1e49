//! keel-nbd: serves the volumes of a Keel store over NBD until SIGINT or SIGTERM, then
//! finishes the requests in flight, checkpoints and closes the store.

mod cli;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use keel_drivers::any::AnyDevice;
use keel_drivers::psync::{PsyncConfig, PsyncDevice};
use keel_drivers::sim::{SimConfig, SimDevice, SimImage};
use keel_drivers::uring::{UringConfig, UringDevice};
use keel_engine::volume::{VolumeError, VolumeOptions, Volumes};
use keel_engine::{
    Cores, Engine, Idle, MkfsOptions, ReactorConfig, ShardConfig, Store, StoreError,
};
use keel_nbd::{Bind, NbdError, Server, StopHandle};

use cli::{Cli, Driver};

/// Blocks SIGINT, SIGTERM and SIGUSR1 in every thread (call before any thread starts) and
/// returns the set, for the one thread that waits for them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // `set` is a valid sigset_t owned by this frame; the calls only write to it
    // and to this thread's signal mask.
    // SAFETY: only `set` and this thread's mask are written.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

/// The crash-test hook: the sim device (a clone shares its media) and where its image goes.
struct PowerCut {
    dev: SimDevice,
    to: PathBuf,
}

impl PowerCut {
    /// Pulls the plug, saves what survived, and ends the process without a shutdown.
    fn cut_and_exit(&self) -> ! {
        let (image, report) = self.dev.power_cut();
        if let Err(e) = std::fs::write(&self.to, &image.data) {
            eprintln!("keel-nbd: power cut: write {}: {e}", self.to.display());
            std::process::exit(1);
        }
        eprintln!(
            "keel-nbd: power cut ({report:?}); image in {}",
            self.to.display()
        );
        std::process::exit(0);
    }
}

/// Waits for the signals on a thread of its own: SIGINT or SIGTERM stop the server;
/// SIGUSR1 cuts the power when a --power-cut-to hook is armed (else it is ignored).
fn stop_on_signal(set: libc::sigset_t, stop: StopHandle, cut: Option<PowerCut>) {
    std::thread::spawn(move || loop {
        let mut sig = 0;
        // SAFETY: `set` is an initialised sigset_t, `sig` a valid place for the result.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        if sig == libc::SIGUSR1 {
            match &cut {
                Some(c) => c.cut_and_exit(),
                None => log::warn!("SIGUSR1 without --power-cut-to: ignored"),
            }
            continue;
        }
        log::info!("signal {sig}: stopping");
        stop.stop();
        return;
    });
}

fn open_device(cli: &Cli) -> Result<AnyDevice, NbdError> {
    let open = |e: keel_drivers::DriverError| NbdError::Config(format!("open device: {e}"));
    Ok(match cli.driver {
        Driver::Sim => {
            let mut c = SimConfig::new(512, cli.size / 512);
            c.latency_ns = cli.sim_latency_us.saturating_mul(1000);
            c.max_transfer_bytes = c.max_transfer_bytes.max(1 << 20);
            c.volatile_write_cache = cli.sim_write_cache;
            AnyDevice::Sim(match &cli.sim_image {
                None => SimDevice::new(c).map_err(open)?,
                Some(p) => {
                    let data = std::fs::read(p).map_err(|e| {
                        NbdError::Config(format!("read sim image {}: {e}", p.display()))
                    })?;
                    let image = SimImage {
                        block_size: 512,
                        data,
                    };
                    SimDevice::from_image(c, image).map_err(open)?
                }
            })
        }
        Driver::Psync | Driver::Uring => {
            let path = cli.path.clone().expect("clap requires --path");
            let is_block = std::fs::metadata(&path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()));
            let create = (!is_block).then_some(cli.size);
            if cli.driver == Driver::Psync {
                let mut c = PsyncConfig::new(path);
                c.create_bytes = create;
                AnyDevice::Psync(PsyncDevice::open(&c).map_err(open)?)
            } else {
                let mut c = UringConfig::new(path);
                c.create_bytes = create;
                AnyDevice::Uring(UringDevice::open(&c).map_err(open)?)
            }
        }
    })
}

fn run(cli: Cli) -> Result<(), NbdError> {
    let set = block_signals();
    let dev = open_device(&cli)?;
    let mut mk = MkfsOptions::new(cli.store_mode.into());
    mk.shards = cli.shards;
    let rcfg = ReactorConfig {
        cores: if cli.spin {
            Cores::Auto
        } else {
            Cores::Unpinned
        },
        idle: if cli.spin {
            Idle::Spin
        } else {
            Idle::Backoff {
                spin_turns: 64,
                sleep_us_max: cli.reactor_sleep_us_max,
            }
        },
        thread_name: "keel-nbd-r".into(),
        ..ReactorConfig::default()
    };
    let cut = match (&dev, &cli.power_cut_to) {
        (AnyDevice::Sim(d), Some(to)) => Some(PowerCut {
            dev: d.clone(),
            to: to.clone(),
        }),
        (_, Some(_)) => {
            return Err(NbdError::Config(
                "--power-cut-to needs the sim driver".into(),
            ))
        }
        _ => None,
    };
    if cli.format || (cli.driver == Driver::Sim && cli.sim_image.is_none()) {
        Store::mkfs(&dev, &mk)?;
    }
    let store = match Store::open(dev, ShardConfig::default()) {
        Ok(s) => s,
        Err(StoreError::NotFormatted(why)) => {
            log::info!("no store on the device ({why}): formatting");
            let dev = open_device(&cli)?;
            Store::mkfs(&dev, &mk)?;
            Store::open(dev, ShardConfig::default())?
        }
        Err(e) => return Err(e.into()),
    };
    let engine = Arc::new(Engine::from_store(store, rcfg)?);
    let vols = Volumes::new(Arc::clone(&engine))?;
    drop(engine);
    for (name, size) in &cli.volumes {
        let o = VolumeOptions {
            size_bytes: *size,
            object_bytes: cli.object_size,
            mode: cli.volume_mode.into(),
        };
        match vols.create(name, &o) {
            Ok(i) => log::info!("created volume {name:?}: {i:?}"),
            Err(VolumeError::Exists(_)) => log::info!("volume {name:?} exists"),
            Err(e) => return Err(e.into()),
        }
    }
    for (name, size) in &cli.resizes {
        let i = vols.resize(name, *size)?;
        log::info!("resized volume {name:?}: {i:?}");
    }
    for name in &cli.removes {
        vols.remove(name)?;
        log::info!("removed volume {name:?}");
    }
    if cli.list {
        for name in vols.list()? {
            let i = vols.info(&name)?;
            println!(
                "{name}\tsize_bytes={}\tobject_bytes={}\tmode={}",
                i.size_bytes, i.object_bytes, i.mode
            );
        }
        let engine = vols.into_engine();
        return match Arc::try_unwrap(engine) {
            Ok(e) => Ok(e.close()?),
            Err(_) => Err(NbdError::Config("engine still in use".into())),
        };
    }
    let vols = Arc::new(vols);
    let bind = match &cli.unix {
        Some(p) => Bind::Unix(p.clone()),
        None => Bind::Tcp(cli.listen.clone()),
    };
    let server = Server::bind(&bind, Arc::clone(&vols))?;
    stop_on_signal(set, server.stop_handle(), cut);
    eprintln!(
        "keel-nbd: serving {:?} on {} ({} driver)",
        vols.list()?,
        server.describe(),
        format!("{:?}", cli.driver).to_lowercase()
    );
    server.run()?;
    let engine = Arc::try_unwrap(vols)
        .map_err(|_| NbdError::Config("volumes still in use at shutdown".into()))?
        .into_engine();
    match Arc::try_unwrap(engine) {
        Ok(e) => e.close()?,
        Err(_) => return Err(NbdError::Config("engine still in use at shutdown".into())),
    }
    eprintln!("keel-nbd: stopped; store checkpointed and closed");
    Ok(())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("keel-nbd: {e}");
        std::process::exit(1);
    }
}
